"""Frames of a segment of a video file (PyAV, which bundles FFmpeg) or of an image, as JPEG.

Sampling: `num_frames` frames at the centres of equal parts of the segment, or one frame every
1/`fps` seconds (at most `max_frames`, spread over the segment when more would fit). The frame shown
at a time is the last one whose presentation time is not after it. Decoding seeks to the segment
(and across gaps longer than `SEEK_GAP_S`) and otherwise runs forward, so neighbouring frames are
decoded once. Frames are resized so that their short side is `short_side` (never enlarged).
"""

import dataclasses
import io
import math
import os

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
SEEK_GAP_S = 5.0  # decoding forward this far costs about what a seek to the next keyframe does
# A segment may end a little after the video does (rounded annotations): clamp it silently.
END_SLACK_S = 0.5


class DecodeError(Exception):
  """A clip that cannot be made from its source: a reason (the report groups by it) and detail."""

  def __init__(self, reason: str, detail: str):
    super().__init__(f"{reason}: {detail}")
    self.reason, self.detail = reason, detail


UNREADABLE = "unreadable or not a video"
OUTSIDE = "segment outside the video"
TRUNCATED = "truncated or corrupt stream"


@dataclasses.dataclass
class Clip:
  frames: list[Image.Image]
  fps: float                # rate of the stored frames; 0 for an image
  meta: dict                # source facts: size, duration, segment, source fps
  notes: list[str]          # what was handled rather than skipped (a clamped segment, ...)


def encode_jpeg(img: Image.Image, quality: int = 90) -> bytes:
  buf = io.BytesIO()
  img.save(buf, format="JPEG", quality=quality)
  return buf.getvalue()


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
  scale = short_side / min(width, height)
  if scale >= 1:
    return width, height
  return max(1, round(width * scale)), max(1, round(height * scale))


def sample_times(start: float, end: float, num_frames: int | None, fps: float | None,
                 max_frames: int) -> np.ndarray:
  """Times (seconds from the video's start) of the frames to store from [start, end)."""
  length = end - start
  n = num_frames or min(max(1, math.floor(length * fps)), max_frames)
  return start + (np.arange(n) + 0.5) * (length / n)


def is_image(path: str) -> bool:
  return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def _opened(source: str | bytes):
  """What PyAV and Pillow open: a path, or a file object over the bytes of a file (a member of a
  tar file, read in place)."""
  return io.BytesIO(source) if isinstance(source, bytes) else source


def load_image(source: str | bytes, short_side: int) -> Clip:
  try:
    with Image.open(_opened(source)) as img:
      img = ImageOps.exif_transpose(img).convert("RGB")
  except (UnidentifiedImageError, OSError, ValueError) as e:
    raise DecodeError("unreadable or not an image", str(e)) from e
  w, h = img.size
  img = img.resize(scaled_size(w, h, short_side), Image.Resampling.BICUBIC, reducing_gap=3.0)
  return Clip([img], 0.0, {"source_size": [w, h]}, [])


def _duration(container, stream) -> float | None:
  if stream.duration is not None:
    return float(stream.duration * stream.time_base)
  if container.duration is not None:
    return container.duration / av.time_base
  return None


def _frame_time(frame, t0: float) -> float:
  return float(frame.time) - t0


def _scan_duration(source: str | bytes) -> float:
  """The end of the last frame, for containers that do not state a duration (some webm/gif)."""
  with av.open(_opened(source)) as container:
    stream = container.streams.video[0]
    t0 = float((stream.start_time or 0) * stream.time_base)
    last, step = None, 1 / float(stream.average_rate or 25)
    for frame in container.decode(stream):
      last = _frame_time(frame, t0)
  if last is None:
    raise DecodeError(UNREADABLE, "the video stream holds no frames")
  return last + step


def decode_video(source: str | bytes, start: float | None, end: float | None,
                 num_frames: int | None, fps: float | None, max_frames: int,
                 short_side: int) -> Clip:
  """The clip of [start, end) of the video at path `source` (or of the video file whose bytes
  `source` holds)."""
  try:
    container = av.open(_opened(source))
  except av.error.FFmpegError as e:
    raise DecodeError(UNREADABLE, str(e)) from e
  try:
    with container:
      return _decode(container, source, start, end, num_frames, fps, max_frames, short_side)
  except av.error.FFmpegError as e:  # the container opened, its data did not decode
    raise DecodeError(TRUNCATED, str(e)) from e


def _decode(container, source, start, end, num_frames, fps, max_frames, short_side) -> Clip:
  notes = []
  if not container.streams.video:
    raise DecodeError(UNREADABLE, "the file holds no video stream")
  stream = container.streams.video[0]
  duration = _duration(container, stream)
  if duration is None or duration <= 0:
    duration = _scan_duration(source)
  start = 0.0 if start is None else float(start)
  end = duration if end is None else float(end)
  if start < 0 or end <= start:
    raise DecodeError(OUTSIDE, f"segment [{start:g}, {end:g}] s is empty or negative")
  if start >= duration:
    raise DecodeError(OUTSIDE, f"segment [{start:g}, {end:g}] s starts after the video ends "
                      f"({duration:.2f} s)")
  if end > duration:
    if end > duration + END_SLACK_S:
      notes.append(f"segment end {end:g} s clamped to the video's duration {duration:.2f} s")
    end = duration
  times = sample_times(start, end, num_frames, fps, max_frames)
  rate = float(stream.average_rate or 25)
  chosen = _select_frames(container, stream, times, tolerance=max(END_SLACK_S, 2 / rate))
  w, h = stream.codec_context.width, stream.codec_context.height
  size = scaled_size(w, h, short_side)
  images = {}
  for f in chosen:
    if id(f) not in images:
      images[id(f)] = f.reformat(width=size[0], height=size[1], format="rgb24",
                                 interpolation="AREA").to_image()
  if len(images) < len(times):
    notes.append(f"{len(images)} distinct frames for {len(times)} samples: frames repeat")
  meta = {"source_size": [w, h], "source_fps": rate, "duration": round(duration, 3),
          "start": round(start, 3), "end": round(end, 3)}
  return Clip([images[id(f)] for f in chosen], len(times) / (end - start), meta, notes)


def _select_frames(container, stream, times: np.ndarray, tolerance: float) -> list:
  """The frame shown at each time; raises DecodeError if the stream ends well before one."""
  t0 = float((stream.start_time or 0) * stream.time_base)
  chosen, frames, shown, pending, last = [], None, None, None, -math.inf
  for target in times:
    if frames is None or target > last + SEEK_GAP_S:
      # backward=True lands on the keyframe at or before the target; decode forward from there.
      container.seek(int((target + t0) / stream.time_base), stream=stream, backward=True)
      frames, shown, pending = container.decode(stream), None, None
    while True:
      frame = pending if pending is not None else next(frames, None)
      pending = None
      if frame is None:
        break
      last = _frame_time(frame, t0)
      if last <= target:
        shown = frame
      else:
        pending = frame
        break
    pick = shown if shown is not None else pending  # before the first frame: the first frame
    if pick is None or target - _frame_time(pick, t0) > tolerance:
      got = "no frame" if pick is None else f"the last frame at {_frame_time(pick, t0):.2f} s"
      raise DecodeError(TRUNCATED, f"the stream ends before {target:.2f} s ({got})")
    chosen.append(pick)
  return chosen
