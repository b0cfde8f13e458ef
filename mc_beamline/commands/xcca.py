"""Offline analysis commands: ``mc-beamline xcca`` on the frames of a scan.

:func:`run_xcca` is what the command runs. It checks every input before it reads a frame
or writes anything (:func:`prepare_xcca`), then streams the frames through
:class:`~mc_beamline.analysis.xcca.pipeline.XccaAnalysis` in batches (memory stays
bounded: two batches of frames are held at a time), and writes RESULT.json atomically
(a temporary file in the same directory, then :func:`os.replace`): a run that fails
leaves no RESULT.json, not even a partial one.

Bad input is reported by raising :class:`InputError` (a :class:`ValueError`) whose message
is one sentence for the user; ``mc_beamline.cli`` prints it on stderr and exits with 2.

Frames (:func:`~mc_beamline.io.frame_sources.open_frames`): an HDF5 dataset (default
``/entry/data/data``) of shape (n, rows, columns), or (rows, columns) for one frame; an
Eiger master file with its linked data files; or a series of CBF/EDF/TIFF images; integer
or float counts. Eiger-style Bitshuffle/LZ4 compression works (``hdf5plugin`` registers
the filter). Pixels that read the Eiger gap value 2³²-1, the maximum of an unsigned dtype,
a negative value of a signed dtype (Pilatus gaps, -1 and -2), or a non-finite value are bad
pixels of that frame; a frame in which no pixel outside the mask is finite (an all-NaN
frame) is bad input and stops the command with its index.

Mask: the master's pixel mask (if the frames come with one), OR-combined with ``--mask``.
Geometry: ``--poni``, else the geometry of an Eiger/NXmx master's header (announced in one
line on stderr), else bad input.
"""

from __future__ import annotations

import importlib
import math
import re
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from mc_beamline.analysis.detector.masks import MaskError, load_mask
from mc_beamline.analysis.detector.polar import RingNotOnDetectorError
from mc_beamline.instrument.geometry import DetectorGeometry, GeometryError
from mc_beamline.io.frame_sources import FrameSource, open_frames
from mc_beamline.io.inputs import InputError, check_output, short_reason
from mc_beamline.io.result_json import write_json

DEFAULT_BATCH_BYTES = 64 * 2**20
"""Target size of one batch of frames in memory (the command holds two)."""
MAX_BATCH_FRAMES = 32
RESULT_IMPORTS = ("scipy.optimize",)
"""Modules the result needs and the frames do not (the structure fits): imported in a
background thread while the frames stream, instead of after the last frame (~0.3 s)."""
RESULT_IMPORT_TIMEOUT_S = 60.0


# --------------------------------------------------------------------------- inputs
def parse_scan_shape(text: str | None) -> tuple[int, int] | None:
    """``"35x51"`` → (35, 51) (rows, columns); None stays None.

    Raises
    ------
    InputError
        If ``text`` is not of the form NYxNX with positive integers.
    """
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(text))
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise InputError(f"--scan-shape must look like NYxNX with positive integers (e.g. 35x51), got {text!r}.")
    return int(m.group(1)), int(m.group(2))


def correction_options(args) -> dict:
    """The intensity-correction settings of ``--no-solid-angle``, ``--polarization FACTOR`` and
    ``--hot-pixel-frames K`` (only those given; the others keep their defaults).

    Raises
    ------
    InputError
        For a factor outside [-1, 1] or a negative K.
    """
    options: dict = {}
    if getattr(args, "no_solid_angle", False):
        options["correct_solid_angle"] = False
    factor = getattr(args, "polarization", None)
    if factor is not None:
        if not (math.isfinite(factor) and -1.0 <= factor <= 1.0):
            raise InputError(f"--polarization must be pyFAI's polarisation factor, in -1..1, got {factor:g}.")
        options["polarization_factor"] = float(factor)
    k = getattr(args, "hot_pixel_frames", None)
    if k is not None:
        if k < 0:
            raise InputError(f"--hot-pixel-frames must be 0 (no search) or a positive number of frames, got {k}.")
        options["hot_pixel_frames"] = int(k)
    return options


def _positive(name: str, value: float | None, unit: str) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be a positive number of {unit}, got {value:g}.")


@dataclass
class XccaJob:
    """A checked ``mc-beamline xcca`` invocation, ready to run.

    Attributes
    ----------
    frames : the open frame source.
    geometry, mask : detector geometry and static mask (True = bad) or None.
    geometry_note : where the geometry came from when not from --poni (one line), or None.
    analysis : the configured :class:`~mc_beamline.analysis.xcca.pipeline.XccaAnalysis`.
    out : RESULT.json path; plot_dir : figure directory or None.
    batch : frames per batch (read and analysed together).
    """

    frames: FrameSource
    geometry: DetectorGeometry
    mask: np.ndarray | None
    analysis: Any
    out: Path
    plot_dir: Path | None
    batch: int
    geometry_note: str | None = None
    timings: dict = field(default_factory=lambda: {"read_s": 0.0, "analysis_s": 0.0, "wait_s": 0.0})

    def close(self) -> None:
        self.frames.close()


def _geometry(poni: Path | None, frames: FrameSource) -> tuple[DetectorGeometry, str | None]:
    """The detector geometry: from ``poni`` if given, else from the frames' header.

    Returns the geometry and, for a header geometry, the line that says so.

    Raises
    ------
    InputError
        If the PONI file is unusable or its detector is not the frames' size, or there is
        neither a PONI file nor a header geometry.
    """
    if poni is not None:
        try:
            geometry = DetectorGeometry.from_poni(poni, shape=frames.frame_shape)
        except GeometryError as exc:
            raise InputError(short_reason(exc) + ".") from None
        if frames.frame_shape != geometry.shape:
            raise InputError(
                f"Frames in {frames.label} are {frames.frame_shape[0]}x{frames.frame_shape[1]} "
                f"pixels but the detector in {poni} is {geometry.shape[0]}x{geometry.shape[1]}."
            )
        return geometry, None
    g = frames.header_geometry
    if g is None:
        raise InputError(f"No detector geometry: give --poni GEOM.poni ({frames.header_geometry_problem}).")
    note = (
        f"no --poni, geometry from the header of {frames.label}: beam centre x = {g.poni2_m / g.pixel2_m:.2f} px "
        f"(column), y = {g.poni1_m / g.pixel1_m:.2f} px (row), distance {g.dist_m * 1e3:.2f} mm, "
        f"pixel {g.pixel2_m * 1e6:g} x {g.pixel1_m * 1e6:g} µm, wavelength {g.wavelength_m * 1e10:.5f} Å, untilted."
    )
    return g, note


def prepare_xcca(args, batch: int | None = None) -> XccaJob:
    """Check every input of ``mc-beamline xcca`` and set up the analysis; reads no frame.

    ``args`` has the attributes of the command's parser (frames: a path, a glob pattern
    or a list of them; poni (or None); mask; dataset (or None); q_sl, q_al, scan_shape,
    step_um, snake, out, plot, no_solid_angle, polarization, hot_pixel_frames).

    Raises
    ------
    InputError
        With one sentence naming the first bad input.
    """
    from mc_beamline.analysis.kernel_warmup import start_kernel_warmup
    from mc_beamline.analysis.xcca.pipeline import XccaAnalysis

    out = Path(args.out)
    check_output(out, "--out")
    plot_dir = getattr(args, "plot", None)
    if plot_dir is not None:
        plot_dir = Path(plot_dir)
        if plot_dir.exists() and not plot_dir.is_dir():
            raise InputError(f"--plot {plot_dir} exists and is not a directory.")
    _positive("--q-sl", args.q_sl, "nm⁻¹")
    _positive("--q-al", args.q_al, "nm⁻¹")
    _positive("--step-um", args.step_um, "µm")
    if args.q_sl >= args.q_al:
        raise InputError(f"--q-sl (the superlattice ring, {args.q_sl:g} nm⁻¹) must lie below --q-al (the "
                         f"atomic-lattice ring, {args.q_al:g} nm⁻¹); the two rings are correlated with each other.")
    scan_shape = parse_scan_shape(args.scan_shape)
    corrections = correction_options(args)

    frames = open_frames(args.frames, args.dataset)
    start_kernel_warmup()
    try:
        geometry, geometry_note = _geometry(args.poni, frames)
        mask = frames.pixel_mask
        if args.mask is not None:
            try:
                user_mask = load_mask(args.mask, geometry.shape)
            except MaskError as exc:
                raise InputError(short_reason(exc) + ".") from None
            mask = user_mask if mask is None else mask | user_mask
        if mask is not None and mask.all():
            source = "--mask" if args.mask is not None else f"the pixel mask of {frames.label}"
            raise InputError(f"{source} marks every pixel bad; nothing is left to analyse.")
        if scan_shape is not None and scan_shape[0] * scan_shape[1] != frames.n_frames:
            raise InputError(
                f"--scan-shape {scan_shape[0]}x{scan_shape[1]} has {scan_shape[0] * scan_shape[1]} points "
                f"but {frames.label} holds {frames.n_frames} frame(s)."
            )
        try:
            analysis = XccaAnalysis(
                geometry, mask, q_sl=args.q_sl, q_al=args.q_al, scan_shape=scan_shape, step_um=args.step_um,
                snake=bool(getattr(args, "snake", False)), **corrections,
            )
        except RingNotOnDetectorError as exc:
            raise InputError(short_reason(exc) + ".") from None
        except GeometryError as exc:
            raise InputError(short_reason(exc) + ".") from None
        if batch is None:
            batch = max(1, min(MAX_BATCH_FRAMES, DEFAULT_BATCH_BYTES // max(frames.frame_bytes, 1)))
            # whole chunks per read: a chunk of several frames is then decompressed once
            cf = frames.chunk_frames
            batch = max(1, batch // cf) * cf if cf > 1 else batch
        return XccaJob(frames, geometry, mask, analysis, out, plot_dir, int(min(batch, frames.n_frames)),
                       geometry_note=geometry_note)
    except BaseException:
        frames.close()
        raise


# ------------------------------------------------------------------------- analysis
def _check_finite(batch: np.ndarray, good: np.ndarray | None, first_index: int, frames: FrameSource) -> None:
    """Raise InputError for the first frame with no finite pixel outside the mask."""
    if batch.dtype.kind != "f":
        return
    n = batch.shape[0]
    finite = np.isfinite(batch).reshape(n, -1)
    if good is not None:
        finite &= good
    ok = finite.any(axis=1)
    if not ok.all():
        i = first_index + int(np.argmin(ok))
        raise InputError(
            f"Frame {i} of {frames.label} has no finite pixel (all NaN or infinite); "
            "remove it or replace it by a frame of counts."
        )


def iter_batches(stack: FrameSource, batch: int, timings: dict | None = None,
                 prefetch: bool = True) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first index, frames) batches of ``stack``, reading the next batch while the
    caller works on this one (decompression releases the GIL; :meth:`FrameStack.read_into`
    decompresses the Bitshuffle/LZ4 frames of a batch in a thread pool, straight into the buffer).

    Two buffers are used alternately: a yielded array is valid until the next iteration.
    """
    n = stack.n_frames
    buffers = [np.empty((batch,) + stack.frame_shape, dtype=stack.dtype) for _ in range(2 if prefetch else 1)]
    starts = list(range(0, n, batch))

    def read(k: int) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        start = starts[k]
        view = stack.read_into(start, min(start + batch, n), buffers[k % len(buffers)])
        return view, time.perf_counter() - t0

    if not prefetch:
        for k, start in enumerate(starts):
            view, dt = read(k)
            if timings is not None:
                timings["read_s"] += dt
            yield start, view
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mc-xcca-read") as pool:
        pending = pool.submit(read, 0)
        try:
            for k, start in enumerate(starts):
                t0 = time.perf_counter()
                view, dt = pending.result()
                if timings is not None:
                    timings["read_s"] += dt
                    timings["wait_s"] += time.perf_counter() - t0
                pending = pool.submit(read, k + 1) if k + 1 < len(starts) else None
                yield start, view
        finally:
            if pending is not None:
                pending.cancel()
                try:
                    pending.result()
                except Exception:  # noqa: BLE001 - the caller is already leaving with its own error
                    pass


def analyse(job: XccaJob, progress: Callable[[int], None] | None = None, prefetch: bool = True) -> None:
    """Feed all frames of ``job`` to its analysis (batches of ``job.batch`` frames)."""
    stack, analysis = job.frames, job.analysis
    good = None if job.mask is None else ~job.mask.reshape(-1)
    batches = iter_batches(stack, job.batch, job.timings, prefetch=prefetch)
    importer = None
    try:
        with closing(batches):
            for start, frames in batches:
                _check_finite(frames, good, start, stack)
                t0 = time.perf_counter()
                n = frames.shape[0]
                if n == 1:
                    analysis.add_frame(start, frames[0])
                else:
                    analysis.add_frames(range(start, start + n), frames)
                job.timings["analysis_s"] += time.perf_counter() - t0
                if progress is not None:
                    progress(n)
                if importer is None:  # after the first batch: the first frame is not delayed
                    importer = threading.Thread(target=_import_all, args=(RESULT_IMPORTS,), daemon=True,
                                                name="mc-result-imports")
                    importer.start()
    finally:
        if importer is not None:  # no import runs in two threads at once once the frames are done
            importer.join(RESULT_IMPORT_TIMEOUT_S)


def _import_all(names: tuple[str, ...]) -> None:
    for name in names:
        importlib.import_module(name)


# --------------------------------------------------------------------------- output
def _fmt(value: float | None, fmt: str = ".3f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{fmt}}{unit}"


def _pm(value: float | None, err: float | None, fmt: str = ".3f", unit: str = "") -> str:
    """``value ± err unit`` (``n/a`` without a value; the error left out where unknown)."""
    if value is None:
        return "n/a"
    return f"{value:{fmt}}" + ("" if err is None else f" ± {err:{fmt}}") + unit


def summary_lines(result: dict, job: XccaJob, seconds: float, figure: Path | None) -> list[str]:
    """The short report printed on stdout."""
    s = job.analysis.settings
    shape = f"{s.scan_shape[0]}x{s.scan_shape[1]} raster" if s.scan_shape else "one row"
    sl = result["superlattice"]
    mis = result["misorientation_deg"]
    dom = result["domains"]
    peaks = ", ".join(f"{p:.1f}" for p in result["ccf_peaks_deg"]) or "none"
    lines = [
        f"frames: {result['n_frames']} ({shape}) from {job.frames.label} "
        f"in {seconds:.1f} s ({result['n_frames'] / max(seconds, 1e-9):.0f} frames/s)",
        f"selected: {result['n_selected']} frames with peaks on both rings "
        f"(q_SL = {s.q_sl:g}, q_AL = {s.q_al:g} nm⁻¹)",
        f"superlattice: {sl['lattice'] or 'n/a'}, c/a = {_pm(sl['c_over_a'], sl['c_over_a_err'])}, "
        f"beta = {_fmt(sl['beta_deg'], '.2f', '°')}; CCF peaks (deg): {peaks}",
        "orientational disorder (FWHM): "
        f"{_pm(result['orientational_disorder_fwhm_deg'], result['orientational_disorder_fwhm_deg_err'], '.1f', '°')}",
        f"misorientation psi: mean {_pm(mis['mean'], mis['mean_err'], '.2f', '°')}, spread (std) "
        f"{_fmt(mis['std'], '.2f', '°')} (n = {mis['n']})",
        f"domains: {dom['count']}, mean area {_fmt(dom['mean_area_um2'], '.2f', ' µm²')}",
    ]
    if figure is not None:
        lines.append(f"figure: {figure}")
    lines.append(f"result: {job.out}")
    return lines


def run_xcca(args, *, batch: int | None = None, prefetch: bool = True, out=None,
             timings: dict | None = None) -> dict:
    """Run ``mc-beamline xcca``: check inputs, analyse all frames, write RESULT.json.

    Returns the RESULT.json dict. ``batch``: frames per batch (default: about 64 MiB);
    ``prefetch``: read the next batch in a thread while this one is analysed; ``out``:
    the stream for the summary (default stdout); ``timings``: a dict that receives the
    seconds spent in each phase (``setup_s``, ``read_s``, ``analysis_s``, ``wait_s``,
    ``stream_s``, ``result_s``, ``output_s`` (figure and JSON), ``total_s``).

    Raises
    ------
    InputError
        For bad input (nothing is written).
    """
    out = sys.stdout if out is None else out
    t_start = time.perf_counter()
    job = prepare_xcca(args, batch=batch)
    if job.geometry_note is not None:
        print(f"mc-beamline xcca: {job.geometry_note}", file=sys.stderr)
    t_setup = time.perf_counter()
    try:
        from tqdm import tqdm

        disable = True if getattr(args, "no_progress", False) else None  # None: off unless stderr is a TTY
        with warnings.catch_warnings():
            # empty slices (a ring without peaks in a frame) are expected; the result says what was found
            warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"mc_beamline\.analysis")
            with tqdm(total=job.frames.n_frames, unit="frame", desc="xcca", file=sys.stderr, disable=disable,
                      dynamic_ncols=True, leave=False) as bar:
                analyse(job, bar.update, prefetch=prefetch)
            t_stream = time.perf_counter()
            details = job.analysis.details()
            result = job.analysis.result(details)
        t_result = time.perf_counter()
        figure = None
        if job.plot_dir is not None:
            from mc_beamline.io.figures import xcca_figure

            job.plot_dir.mkdir(parents=True, exist_ok=True)
            figure = xcca_figure(job.analysis, details,
                                 job.plot_dir / f"{job.frames.stem}_xcca.png")
        write_json(result, job.out)
    finally:
        job.close()
    t_end = time.perf_counter()
    if timings is not None:
        timings.update(job.timings)
        timings.update(setup_s=t_setup - t_start, stream_s=t_stream - t_setup, result_s=t_result - t_stream,
                       output_s=t_end - t_result, total_s=t_end - t_start)
    for line in summary_lines(result, job, t_end - t_start, figure):
        print(line, file=out)
    return result


__all__ = [
    "InputError",
    "XccaJob",
    "prepare_xcca",
    "analyse",
    "iter_batches",
    "parse_scan_shape",
    "run_xcca",
]
