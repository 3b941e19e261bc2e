"""A PNG of retrieval results: text queries with their top-k clips as frame strips."""

import textwrap

import numpy as np
from etils import epath
from PIL import Image, ImageDraw, ImageFont

from input_pipeline import pipeline

MATCH, OTHER, BACKGROUND = (40, 180, 60), (150, 150, 150), (255, 255, 255)


def draw_retrieval(path: str, embeddings, data_cfg, tokenizer, split: str,
                   num_queries: int = 6, top_k: int = 3, scale: int = 2) -> None:
  """Picks `num_queries` captions spread over the split, draws their top-k clips; the clip that
  the caption belongs to gets a green frame and a check mark."""
  sim = embeddings.text @ embeddings.video.T
  queries = np.unique(np.linspace(0, len(sim) - 1, num_queries).astype(int))
  tops = np.argsort(-sim[queries], axis=1, kind="stable")[:, :top_k]
  rows = np.unique(np.concatenate([queries, tops.ravel()]))
  examples = dict(zip(rows, pipeline.eval_examples(data_cfg, tokenizer, split,
                                                   embeddings.index[rows])))
  t, size = data_cfg.num_frames, data_cfg.image_size * scale
  font = ImageFont.load_default(size=14)
  text_w, pad, label_h = 300, 8, 18
  strip_w = t * size
  cell_h = size + label_h + pad
  canvas = Image.new("RGB", (text_w + top_k * (strip_w + 2 * pad) + pad,
                             label_h + len(queries) * cell_h + pad), BACKGROUND)
  draw = ImageDraw.Draw(canvas)
  draw.text((pad, 2), "query", fill=(0, 0, 0), font=font)
  for k in range(top_k):
    draw.text((text_w + k * (strip_w + 2 * pad) + pad, 2), f"top {k + 1}", fill=(0, 0, 0),
              font=font)
  for r, (q, top) in enumerate(zip(queries, tops)):
    y = label_h + r * cell_h
    caption = str(examples[q]["caption"])
    draw.multiline_text((pad, y + pad), "\n".join(textwrap.wrap(caption, 34)), fill=(0, 0, 0),
                        font=font)
    for k, j in enumerate(top):
      x = text_w + k * (strip_w + 2 * pad) + pad
      frames = examples[j]["frames"]  # [T, H, W, 3] uint8
      strip = Image.fromarray(np.concatenate(list(frames), axis=1)).resize(
          (strip_w, size), Image.NEAREST)
      colour = MATCH if j == q else OTHER
      draw.rectangle((x - 3, y + label_h - 3, x + strip_w + 2, y + label_h + size + 2), fill=colour)
      canvas.paste(strip, (x, y + label_h))
      mark = "  correct" if j == q else ""
      draw.text((x, y + 1), f"{sim[q, j]:.2f}{mark}", fill=colour if j == q else (0, 0, 0),
                font=font)
  with epath.Path(path).open("wb") as f:  # a workdir on gs:// too
    canvas.save(f, format="PNG")
