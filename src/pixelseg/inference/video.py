"""Video files and camera streams -> an overlaid video, with the frames per second it ran at.

Three stages run at once: a thread decodes frames (OpenCV/FFmpeg release the GIL), the caller's thread
runs the network, a thread blends overlays and encodes. Bounded queues between them keep memory flat
for any length of video.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2

from pixelseg.errors import PixelsegError
from pixelseg.fileio import atomic_path

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
CAMERA = "camera:"
_END = object()


def is_video(source) -> bool:
    s = str(source)
    return s.startswith(CAMERA) or Path(s).suffix.lower() in VIDEO_EXTS


@dataclass
class VideoReport:
    source: str
    out: str
    frames: int
    width: int
    height: int
    seconds: float          # end to end: first frame decoded -> last frame encoded
    fps: float              # frames / seconds
    network_fps: float      # frames / time spent in the predictor alone

    def to_dict(self) -> dict:
        return asdict(self)


def _open(source: str) -> cv2.VideoCapture:
    if source.startswith(CAMERA):
        idx = source[len(CAMERA):]
        if not idx.isdigit():
            raise PixelsegError(f"{source}: cameras are camera:N with N the device number, e.g. camera:0")
        cap = cv2.VideoCapture(int(idx))
        if not cap.isOpened():
            raise PixelsegError(f"{source}: no camera {idx} could be opened; check the device (/dev/video{idx})")
        return cap
    if not Path(source).is_file():
        raise PixelsegError(f"{source}: video not found")
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise PixelsegError(f"{source}: cannot be decoded as a video; re-encode it (e.g. H.264 .mp4)")
    return cap


def _read_frames(cap, frames_in: queue.Queue, stop: threading.Event, max_frames: int | None) -> None:
    """Reader thread: decoded RGB frames into `frames_in`, then _END."""
    n = 0
    try:
        while not stop.is_set() and (max_frames is None or n < max_frames):
            ok, bgr = cap.read()
            if not ok:
                break
            frames_in.put(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            n += 1
    finally:
        frames_in.put(_END)


def _encode_frames(writer, frames_out: queue.Queue, stop: threading.Event, errors: list, classes, alpha: float) -> None:
    """Encoder thread: (frame, labels) from `frames_out` drawn as overlays into the video writer."""
    from pixelseg.viz import overlay as viz
    try:
        while (item := frames_out.get()) is not _END:
            rgb, label = item
            shown = viz.overlay(rgb, label, classes.colors, alpha, classes.ignore_index)
            writer.write(cv2.cvtColor(shown, cv2.COLOR_RGB2BGR))
    except BaseException as e:   # surfaced in the caller's thread
        errors.append(e)
        stop.set()
        while frames_out.get() is not _END:   # keep draining so the producer never blocks forever
            pass


def _label_frames(predictor, frames_in: queue.Queue, frames_out: queue.Queue, stop: threading.Event,
                  batch_size: int, progress, tally: dict) -> None:
    """The main thread's part: batches of frames through the network, counted in `tally` (frames, network
    seconds) as they go, so a Ctrl-C that ends a camera stream keeps the count of what was recorded."""
    done = False
    while not done and not stop.is_set():
        batch = []
        while len(batch) < batch_size:
            item = frames_in.get()
            if item is _END:
                done = True
                break
            batch.append(item)
        if not batch:
            break
        t = time.perf_counter()
        labels = predictor.predict_batch(batch)
        tally["t_net"] += time.perf_counter() - t
        for rgb, label in zip(batch, labels):
            frames_out.put((rgb, label))
        tally["frames"] += len(batch)
        if progress is not None:
            progress(len(batch))


def predict_video(predictor, source, out, alpha: float = 0.5, max_frames: int | None = None,
                  batch_size: int = 1, progress=None) -> VideoReport:
    """Decode, label and encode in three threads, so the network is never waiting for a codec."""
    source, out = str(source), Path(out)
    fourcc = FOURCC.get(out.suffix.lower())
    if fourcc is None:
        raise PixelsegError(f"--out {out}: a video output ends in {', '.join(sorted(FOURCC))}")
    cap = _open(source)
    fps_in = cap.get(cv2.CAP_PROP_FPS)
    fps_in = fps_in if fps_in and 1 <= fps_in <= 240 else 25.0   # cameras and some containers report 0
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    frames_in: queue.Queue = queue.Queue(maxsize=8)
    frames_out: queue.Queue = queue.Queue(maxsize=8)
    stop = threading.Event()
    errors: list[BaseException] = []
    tally = {"frames": 0, "t_net": 0.0}
    with atomic_path(out) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), fps_in, (w, h))
        if not writer.isOpened():
            cap.release()
            raise PixelsegError(f"--out {out}: OpenCV cannot write {out.suffix} video here; try .avi")
        reader = threading.Thread(target=_read_frames, args=(cap, frames_in, stop, max_frames), daemon=True)
        encoder = threading.Thread(target=_encode_frames, daemon=True,
                                   args=(writer, frames_out, stop, errors, predictor.classes, alpha))
        t0 = time.perf_counter()
        reader.start()
        encoder.start()
        try:
            _label_frames(predictor, frames_in, frames_out, stop, batch_size, progress, tally)
        except KeyboardInterrupt:   # a camera stream ends with Ctrl-C: keep what was recorded
            pass
        finally:
            stop.set()
            while reader.is_alive():   # unblock the reader if it waits on a full queue
                try:
                    frames_in.get_nowait()
                except queue.Empty:
                    reader.join(0.05)
            frames_out.put(_END)
            encoder.join()
            writer.release()
            cap.release()
        seconds = time.perf_counter() - t0
        if errors:
            raise errors[0]
        frames, t_net = tally["frames"], tally["t_net"]
        if frames == 0:
            raise PixelsegError(f"{source}: no frame could be decoded")
    return VideoReport(source, str(out), frames, w, h, seconds, frames / max(seconds, 1e-9),
                       frames / max(t_net, 1e-9))
