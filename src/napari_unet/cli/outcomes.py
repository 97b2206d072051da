"""How a command-line run ends: one-line errors (``--debug``: a traceback), Ctrl-C, exit status."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

from napari_unet.io.files import FILE_ERRORS

#: Errors that name their file or problem, reported as ``error: <message>``; any other
#: error is a bug, reported as one line too (``--debug`` shows its traceback).
REPORTED_ERRORS = FILE_ERRORS
#: Exit status of a run refused or failed as a whole.
EXIT_FAILED = 2
#: Exit status of a run ended by Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130
DEBUG_HELP = "show the traceback of an error instead of one line"
#: What a subcommand stopped by Ctrl-C leaves (every file is written atomically).
INTERRUPTED = {
    "train": "the model file was not written",
    "segment": "results written before are complete; the one in progress was not written "
    "(a zarr output stays marked incomplete); a rerun with --dask-scheduler resumes",
    "weight-map": "the weight map was not written",
    "export-bioimageio": "the package was not written",
}


def run_reporting(args) -> int:
    """Run ``args.func(args)``; report any error or Ctrl-C on one line of standard error.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments with ``func``, ``command`` and ``debug``.

    Returns
    -------
    int
        The subcommand's status; :data:`EXIT_FAILED` after an error,
        :data:`EXIT_INTERRUPTED` after Ctrl-C. With ``args.debug`` errors propagate
        (the traceback is shown).
    """
    if args.debug:
        return args.func(args)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(
            f"napari-unet {args.command}: interrupted: {INTERRUPTED[args.command]}", file=sys.stderr
        )
        return EXIT_INTERRUPTED
    except (*REPORTED_ERRORS, ImportError) as error:
        print(f"napari-unet {args.command}: error: {one_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as error:  # a bug: still one line, the traceback with --debug
        print(
            f"napari-unet {args.command}: internal error: {type(error).__name__}: "
            f"{one_line(error)} (rerun with --debug for the traceback, and please report it)",
            file=sys.stderr,
        )
        return EXIT_FAILED


def one_line(error: BaseException) -> str:
    """An error's message on one line (at most 500 characters)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 500 else text[:497] + "..."


@contextlib.contextmanager
def interrupt_stops(stop: threading.Event, command: str):
    """Make the first Ctrl-C (SIGINT) set ``stop``, like the widget's Stop button.

    The run then ends after its current step and keeps its result; a second Ctrl-C
    raises ``KeyboardInterrupt`` at once, wherever the run is (an atomic write in
    progress is abandoned and the previous file left as it was). The previous handler
    is restored on exit. Outside the main thread (where signals cannot be handled)
    nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def first(signum, frame):
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the next one aborts
        print(
            f"napari-unet {command}: interrupted: finishing the current iteration and saving "
            "the best model so far (Ctrl-C again to abort without saving)",
            file=sys.stderr,
            flush=True,
        )

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
