"""The `probtalk3d` command: one Typer app, one small module per subcommand.

Errors raised by the library (ValueError, FileNotFoundError, RuntimeError, OSError) become one red line on stderr
and exit code 1; Ctrl-C exits 130 and SIGTERM 143; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException
from typing_extensions import Annotated

from probtalk3d_cli import __version__

EXIT_ERROR = 1
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def _error_line(message: str) -> None:
    text = " ".join(str(message).split())  # one line, whatever the exception carried
    if sys.stderr.isatty():
        typer.secho(f"error: {text}", fg="red", err=True)
    else:
        typer.echo(f"error: {text}", err=True)


def _describe(exc: BaseException) -> str:
    from probtalk3d_cli.config import ConfigError

    if isinstance(exc, (ConfigError, ValueError, FileNotFoundError, RuntimeError, PermissionError, ImportError)):
        if isinstance(exc, OSError) and exc.strerror and not exc.filename:
            return exc.strerror
        return str(exc) or type(exc).__name__
    if isinstance(exc, MemoryError):
        return "out of memory; lower the batch size (--set train_pred.batch_size=1) or the audio window length"
    if isinstance(exc, OSError):
        return exc.strerror if (exc.strerror and not exc.filename) else str(exc)
    return f"internal error ({type(exc).__name__}: {exc}); rerun with --debug for the traceback and report it"


class ProbTalkGroup(TyperGroup):
    """Top-level group that turns exceptions into one-line errors with the documented exit codes."""

    def invoke(self, ctx):
        from probtalk3d_cli.signals import Terminated, install_sigterm_handler
        from probtalk3d_cli.ui import is_debug

        install_sigterm_handler()
        try:
            return super().invoke(ctx)
        except (TyperException, typer.Exit, typer.Abort):  # usage errors (exit 2) and explicit exits
            raise
        except KeyboardInterrupt:
            if is_debug():
                raise
            _error_line("interrupted (Ctrl-C); finished outputs are kept, no partial files were left")
            ctx.exit(EXIT_SIGINT)
        except Terminated:
            _error_line("terminated (SIGTERM); finished outputs are kept, no partial files were left")
            ctx.exit(EXIT_SIGTERM)
        except BrokenPipeError:  # `probtalk3d ... | head`: let Typer's main silence it
            raise
        except Exception as exc:  # noqa: BLE001 - the one place where every error becomes a message
            if is_debug():
                raise
            _error_line(_describe(exc))
            ctx.exit(EXIT_ERROR)

    def list_commands(self, ctx):  # data preparation first, then the order of registration
        names = list(self.commands)
        return sorted(names, key=lambda n: (n != "preprocess", names.index(n)))


app = typer.Typer(
    cls=ProbTalkGroup,
    name="probtalk3d",
    help="Speech to 3D facial animation with controllable emotion, identity and intensity (ProbTalk3D).\n\n"
    "Example: probtalk3d generate --checkpoint demo speech.wav --out out/ --emotion happy",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"probtalk3d {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version_callback, is_eager=True,
                                                    help="Print the version and exit.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks and debug logging.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and warnings; no progress bars.")] = False,
) -> None:
    """Speech to 3D facial animation (ProbTalk3D)."""
    from probtalk3d_cli.ui import configure

    configure(quiet=quiet, debug=debug)


def _register() -> None:
    # Order here is the order of `probtalk3d --help`.
    from probtalk3d_cli.cli import (  # noqa: F401  (each module adds its commands to `app`)
        preprocess,
        train,
        generate,
        evaluate,
        render,
        to_vertices,
        import_official,
        export,
        info,
        demo,
    )


_register()


def main() -> None:
    """Console-script entry point."""
    app()
