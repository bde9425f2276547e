"""One red line and an exit code instead of a traceback (`--debug` shows it)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

err_console = Console(stderr=True)
console = Console()

F = TypeVar("F", bound=Callable[..., Any])


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit 2 (1 for invalid documents)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def debug_enabled() -> bool:
    return os.environ.get("APEX_DEBUG", "") not in ("", "0", "false")


def friendly(func: F) -> F:
    """Turn expected exceptions into one red line; anything else too, unless debugging."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except UsageError as exc:
            fail(str(exc), exc.code)
        except Exception as exc:
            if debug_enabled():
                raise
            fail(f"{type(exc).__name__}: {exc}" if not isinstance(exc, (ValueError, OSError)) else str(exc))

    return wrapper  # type: ignore[return-value]
