"""Procedural video-text dataset: coloured shapes that move, written in the frame-shard format.

Each clip shows one or two shapes (circle, square, triangle) in one of several colours on a
coloured background, each with a motion: moves left/right/up/down, grows, shrinks or stays still.
Captions come from templates with paraphrases (several per clip). Every clip also carries the
downstream task fields of the shard format: `label`, the motion of its first shape (synthetic action
classes); `qa`, questions about each shape's colour, shape and motion; `mc`, five candidate captions
of which one is right, the others describing the scene with one attribute of one shape changed.

Direction is decidable only from the order of the frames: a shape's trajectory is centred on a
uniformly drawn point, so any single frame of a left-moving shape is distributed exactly like one of
a right-moving shape (and likewise up/down and grows/shrinks).

    python -m input_pipeline.synthetic --out DIR --num_train N --num_val M --seed S
"""

import copy
import dataclasses
import json
import os
import shutil
import tempfile
from typing import Any

import numpy as np
import tqdm
from absl import flags
from PIL import Image, ImageDraw

from input_pipeline import (files, flag_parsing, shards, text_annotations,
                            tokenizer as tokenizer_lib)
from input_pipeline.video_decode import encode_jpeg

# A small palette on purpose: a batch then holds many clips that look alike and differ only in
# their motion, so a contrastive model must learn motion (with 6 colours and 3 backgrounds it
# ranked by appearance alone and stayed at chance on direction).
COLOURS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (60, 100, 250),
           "yellow": (240, 220, 40)}
BACKGROUNDS = {"black": (10, 10, 10), "gray": (120, 120, 120)}
SHAPES = ("circle", "square", "triangle")
# motion -> (dx, dy, size change) over the whole clip, in units of the travel distance.
MOTIONS = {
    "left": (-1, 0, 0), "right": (1, 0, 0), "up": (0, -1, 0), "down": (0, 1, 0),
    "grows": (0, 0, 1), "shrinks": (0, 0, -1), "still": (0, 0, 0),
}
MOTION_PHRASES = {
    "left": ("moves left", "moves to the left", "slides left", "travels leftward"),
    "right": ("moves right", "moves to the right", "slides right", "travels rightward"),
    "up": ("moves up", "moves upward", "rises", "goes up"),
    "down": ("moves down", "moves downward", "falls", "goes down"),
    "grows": ("grows", "gets bigger", "expands", "becomes larger"),
    "shrinks": ("shrinks", "gets smaller", "contracts", "becomes smaller"),
    "still": ("stays still", "does not move", "stays in place", "remains still"),
}
SUBJECT_TEMPLATES = ("a {colour} {shape}", "the {colour} {shape}", "one {colour} {shape}")
SCENE_TEMPLATES = ("{actions} on a {bg} background", "on a {bg} background, {actions}",
                   "{actions} over a {bg} background")
TRAIN_SEED_OFFSET, VAL_SEED_OFFSET = 0, 1_000_003
# The task fields draw from their own generator, so adding them changed no clip or caption.
TASK_SEED_OFFSET = 7_919
MC_OPTIONS = 5
TRAVEL = 0.4  # distance a moving shape covers over the clip, as a fraction of the frame size


@dataclasses.dataclass(frozen=True)
class Palette:
  """How varied the scenes are: the first `num_*` colours, shapes and backgrounds are used.

  Fewer of them make motion a larger part of what tells captions apart; a single colour, shape and
  background leaves motion as the only difference (the frame-order test uses that).
  """
  num_colours: int = len(COLOURS)
  num_shapes: int = len(SHAPES)
  num_backgrounds: int = len(BACKGROUNDS)
  two_shape_prob: float = 0.3
  # Every shape stays still: with 1 frame, image-text pairs whose captions hold nothing an image
  # cannot show (MILES's 1-frame stage mixes them with videos).
  still: bool = False

  def __post_init__(self):
    for name, n, most in (("num_colours", self.num_colours, len(COLOURS)),
                          ("num_shapes", self.num_shapes, len(SHAPES)),
                          ("num_backgrounds", self.num_backgrounds, len(BACKGROUNDS))):
      if not 1 <= n <= most:
        raise ValueError(f"{name}={n}: must be in [1, {most}]")
    if self.two_shape_prob > 0 and self.num_colours < 2:
      raise ValueError("two_shape_prob > 0 needs num_colours >= 2 (the two shapes differ in "
                       "colour)")


def sample_scene(rng: np.random.Generator, palette: Palette) -> dict:
  n = 2 if rng.random() < palette.two_shape_prob else 1
  colours = rng.choice(list(COLOURS)[:palette.num_colours], size=n, replace=False)
  objects = [{"colour": str(c), "shape": str(rng.choice(SHAPES[:palette.num_shapes])),
              "motion": "still" if palette.still else str(rng.choice(list(MOTIONS)))}
             for c in colours]
  return {"background": str(rng.choice(list(BACKGROUNDS)[:palette.num_backgrounds])),
          "objects": objects}


def render(scene: dict, rng: np.random.Generator, num_frames: int, size: int) -> list[np.ndarray]:
  """Draws the scene's frames; trajectories are centred on a uniform point (see module doc)."""
  travel = TRAVEL * size
  tracks = []
  for obj in scene["objects"]:
    radius = rng.uniform(0.09, 0.13) * size
    dx, dy, ds = MOTIONS[obj["motion"]]
    margin = (1.6 if ds else 1.0) * radius  # largest extent: growing shapes reach 1.6x
    lo_x, hi_x = margin + abs(dx) * travel / 2, size - margin - abs(dx) * travel / 2
    lo_y, hi_y = margin + abs(dy) * travel / 2, size - margin - abs(dy) * travel / 2
    centre = (rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y))
    tracks.append((obj, radius, centre, (dx, dy, ds)))
  frames = []
  for t in range(num_frames):
    phase = t / max(num_frames - 1, 1) - 0.5  # -0.5 .. 0.5
    img = Image.new("RGB", (size, size), BACKGROUNDS[scene["background"]])
    draw = ImageDraw.Draw(img)
    for obj, radius, (cx, cy), (dx, dy, ds) in tracks:
      x, y = cx + dx * travel * phase, cy + dy * travel * phase
      r = radius * (1.0 + 1.2 * ds * phase)  # 0.4x .. 1.6x over the clip
      colour = COLOURS[obj["colour"]]
      if obj["shape"] == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
      elif obj["shape"] == "square":
        draw.rectangle((x - r, y - r, x + r, y + r), fill=colour)
      else:
        draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=colour)
    frames.append(np.asarray(img))
  return frames


def captions_for(scene: dict, rng: np.random.Generator, count: int) -> list[str]:
  out = []
  for _ in range(count):
    actions = " and ".join(
        rng.choice(SUBJECT_TEMPLATES).format(**obj) + " "
        + rng.choice(MOTION_PHRASES[obj["motion"]])
        for obj in scene["objects"])
    out.append(rng.choice(SCENE_TEMPLATES).format(actions=actions, bg=scene["background"]))
  return out


def questions_for(scene: dict) -> list[dict[str, str]]:
  """Each shape's shape, motion and (where no other shape has its shape) colour, as questions;
  a shape is named by its colour, which is unique within a clip."""
  shapes = [obj["shape"] for obj in scene["objects"]]
  out = []
  for obj in scene["objects"]:
    out.append({"question": f"what shape is the {obj['colour']} object?", "answer": obj["shape"]})
    out.append({"question": f"how does the {obj['colour']} {obj['shape']} move?",
                "answer": obj["motion"]})
    if shapes.count(obj["shape"]) == 1:
      out.append({"question": f"what colour is the {obj['shape']}?", "answer": obj["colour"]})
  return out


def multiple_choice(scene: dict, caption: str, rng: np.random.Generator,
                    palette: Palette) -> dict[str, Any]:
  """`caption` among MC_OPTIONS - 1 captions of scenes that differ from `scene` in one attribute
  (colour, shape or motion) of one shape; distinct scenes, the right answer at a random place."""
  values = {"colour": list(COLOURS)[:palette.num_colours],
            "shape": list(SHAPES[:palette.num_shapes]), "motion": list(MOTIONS)}
  seen, options = {json.dumps(scene, sort_keys=True)}, []
  while len(options) < MC_OPTIONS - 1:
    other = copy.deepcopy(scene)
    obj = other["objects"][rng.integers(len(other["objects"]))]
    attr = str(rng.choice([a for a, v in values.items() if len(v) > 1]))
    taken = {o[attr] for o in other["objects"]} if attr == "colour" else {obj[attr]}
    choices = [v for v in values[attr] if v not in taken]
    if not choices:
      continue
    obj[attr] = str(rng.choice(choices))
    key = json.dumps(other, sort_keys=True)
    if key not in seen:
      seen.add(key)
      options.append(captions_for(other, rng, 1)[0])
  answer = int(rng.integers(MC_OPTIONS))
  options.insert(answer, caption)
  return {"options": options, "answer": answer}


def clips(split: str, num: int, seed: int, num_frames: int, size: int, captions_per_clip: int,
          palette: Palette, annotator: text_annotations.Annotator):
  rng = np.random.default_rng(seed)
  task_rng = np.random.default_rng(seed + TASK_SEED_OFFSET)
  for i in range(num):
    scene = sample_scene(rng, palette)
    frames = render(scene, rng, num_frames, size)
    captions = captions_for(scene, rng, captions_per_clip)
    yield {"clip_id": f"{split}-{i:06d}", "captions": captions,
           "text": annotator.annotate(captions),
           "frames": [encode_jpeg(Image.fromarray(f), quality=95) for f in frames],
           "fps": float(num_frames), "meta": scene,
           "label": scene["objects"][0]["motion"], "qa": questions_for(scene),
           "mc": multiple_choice(scene, captions[0], task_rng, palette)}


def generate(out: str, num_train: int, num_val: int, seed: int, num_frames: int = 8,
             size: int = 40, captions_per_clip: int = 3, palette: Palette = Palette(),
             vocab_size: int = 256, records_per_shard: int = 1024) -> None:
  """Writes the dataset to `out` atomically: a partial run never leaves a usable-looking `out`."""
  if os.path.exists(out):
    raise FileExistsError(f"{out}: already exists; remove it or choose another --out")
  parent = os.path.dirname(os.path.abspath(out))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".synthetic-", dir=parent)
  os.chmod(tmp, 0o755)  # mkdtemp makes it private to its owner
  try:
    # Train and val come from different seeds; one generator per split keeps each deterministic.
    splits = {"train": (num_train, seed + TRAIN_SEED_OFFSET),
              "val": (num_val, seed + VAL_SEED_OFFSET)}
    info = {"name": "synthetic", "frame_size": [size, size], "frames_per_clip": num_frames,
            "tokenizer": shards.TOKENIZER_FILE, "splits": {},
            "generator": {"seed": seed, "captions_per_clip": captions_per_clip,
                          "palette": dataclasses.asdict(palette)}}
    train_captions, train_stats = [], text_annotations.TextStats()
    annotator = text_annotations.Annotator()
    for split, (n, split_seed) in splits.items():
      records = tqdm.tqdm(clips(split, n, split_seed, num_frames, size, captions_per_clip, palette,
                                annotator), total=n, desc=f"synthetic {split} clips", unit="clip",
                          mininterval=5)
      if split == "train":
        records = (train_captions.extend(r["captions"]) or train_stats.add(r["text"])
                   or train_stats.add_answers(r["qa"]) or r for r in records)
      shard_files = shards.write_split(tmp, split, records,
                                       num_shards=max(1, -(-n // records_per_shard)), num_records=n)
      info["splits"][split] = {"num_clips": n, "files": shard_files}
    tokenizer_lib.train(train_captions, os.path.join(tmp, shards.TOKENIZER_FILE), vocab_size)
    train_stats.write(tmp)
    shards.write_info(tmp, info)
    os.rename(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


FLAGS = flags.FlagValues()
define = flag_parsing.definer(FLAGS)
define.string("out", None, "output dataset directory (must not exist)")
define.integer("num_train", 6000, "training clips", lower_bound=1)
define.integer("num_val", 256, "validation clips", lower_bound=1)
define.integer("seed", 0, "the generator's seed")
define.integer("num_frames", 8, "frames stored per clip", lower_bound=1)
define.integer("size", 40, "frame height and width in pixels", lower_bound=1)
define.integer("captions_per_clip", 3, "captions of each clip", lower_bound=1)
for _field in dataclasses.fields(Palette):
  {bool: define.bool, int: define.integer, float: define.float}[_field.type](
      _field.name, _field.default, f"Palette.{_field.name}")
flags.mark_flag_as_required("out", flag_values=FLAGS)
flags.register_validator("out", lambda v: v is None or files.is_local(v), files.LOCAL_SHARDS,
                         flag_values=FLAGS)


def main(argv=None):
  flag_parsing.parse(FLAGS, argv, __doc__)
  try:
    palette = Palette(**{f.name: FLAGS[f.name].value for f in dataclasses.fields(Palette)})
  except ValueError as e:
    flag_parsing.fail(str(e))
  generate(FLAGS.out, FLAGS.num_train, FLAGS.num_val, FLAGS.seed, FLAGS.num_frames, FLAGS.size,
           FLAGS.captions_per_clip, palette)
  print(f"wrote {FLAGS.num_train} train and {FLAGS.num_val} val clips to {FLAGS.out}")


if __name__ == "__main__":
  main()
