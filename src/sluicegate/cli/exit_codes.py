"""Exit statuses of the ``sluicegate`` command, one per way a run can end.

======  ===================================================================================
code    meaning
======  ===================================================================================
0       success: every row was produced or filtered (``validate``: no problem found)
1       failure: rows could not be produced, the error rate stopped the run, the exact count
        was not reached, an unexpected error (``validate``: problems found)
2       usage or configuration error: a bad flag, a pipeline file with problems, a run
        directory holding a different pipeline; nothing was generated
3       empty: the run finished without writing a row (every row filtered, or 0 records)
130     interrupted: Ctrl-C, SIGTERM or the deadline stopped the run; finished work is on
        disk and running the same command again resumes it
141     the reader of the output went away (``sluicegate report RUN | head``): what a Unix
        tool killed by SIGPIPE returns
======  ===================================================================================
"""

from __future__ import annotations

from typing import Final

EXIT_SUCCESS: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_EMPTY: Final = 3
EXIT_INTERRUPTED: Final = 130
EXIT_BROKEN_PIPE: Final = 141

_BY_STATUS: Final = {
    "success": EXIT_SUCCESS,
    "failure": EXIT_FAILURE,
    "empty": EXIT_EMPTY,
    "interrupted": EXIT_INTERRUPTED,
}


def exit_code_for(status: str) -> int:
    """The exit status of a run that ended with ``status`` (a ``RunResult.status``)."""
    return _BY_STATUS.get(status, EXIT_FAILURE)
