"""One way to run external commands (docker, k3d, helm, kubectl, streamlit, ...).

Every orchestration step goes through :class:`Runner` so that all of them behave alike:

* commands are argv lists, never shell strings (no quoting bugs, nothing injected);
* ``dry_run`` records and prints the plan without running anything — ``visionctl up --dry-run``
  and the tests read the exact commands from :attr:`Runner.plan`;
* ``verbose`` echoes each command and streams its output; otherwise a spinner with the elapsed
  time runs while the output is kept in memory;
* a failure raises :class:`StepFailed` naming the step, the command, the exit code, the last
  lines of stderr and what to do about it — the CLI prints that and exits non-zero.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

TAIL_LINES = 20


@dataclass
class PlanItem:
    """One entry of the plan: an external command (``argv``) or an in-process action (``argv``
    is None and ``detail`` says what it does). ``note`` says when it runs, e.g. "if absent"."""

    title: str
    argv: list[str] | None = None
    detail: str = ""
    note: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def render(self) -> str:
        text = shlex.join(self.argv) if self.argv is not None else self.detail
        if self.env:
            text = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items())) + " " + text
        return text


class StepFailed(RuntimeError):
    """A step could not complete. ``str()`` is a one-line summary; the CLI renders the rest."""

    def __init__(self, step: str, reason: str, *, argv: Sequence[str] | None = None,
                 returncode: int | None = None, tail: str = "", hint: str = ""):
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason
        self.argv = list(argv) if argv else None
        self.returncode = returncode
        self.tail = tail
        self.hint = hint


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Runner:
    """Runs (or, with ``dry_run``, only records and prints) the steps of a command.

    ``env`` is added to the inherited environment of every command. The console, modes and
    environment are passed in (no module-level state), so tests can drive it directly.
    """

    def __init__(self, console: Console | None = None, *, dry_run: bool = False, verbose: bool = False,
                 env: Mapping[str, str] | None = None):
        self.console = console or Console(stderr=True)
        self.dry_run = dry_run
        self.verbose = verbose
        self.env = dict(env or {})
        self.plan: list[PlanItem] = []

    # -- plan / echo ----------------------------------------------------------------------------

    def _record(self, item: PlanItem) -> None:
        self.plan.append(item)
        if self.dry_run:
            note = f"  [dim]({escape(item.note)})[/]" if item.note else ""
            self.console.print(f"[bold cyan]{len(self.plan):>2}.[/] [bold]{escape(item.title)}[/]{note}")
            self.console.print(f"    {escape(item.render())}", soft_wrap=True, highlight=False)
        elif self.verbose and item.argv is not None:
            self.console.print(f"[dim]$ {escape(item.render())}[/]", soft_wrap=True, highlight=False)

    def action(self, title: str, detail: str, fn: Callable[[], object] | None = None, *, note: str = ""):
        """An in-process step (wait for readiness, smoke test, ...): shown in the plan with
        ``detail``; runs ``fn`` under a spinner unless dry-running. Returns ``fn``'s result."""
        self._record(PlanItem(title, None, detail=detail, note=note))
        if self.dry_run or fn is None:
            return None
        start = time.monotonic()
        with self._spinner(title):
            result = fn()
        self._done(title, start)
        return result

    def note(self, title: str, detail: str = "") -> None:
        """A decision worth showing in the plan that runs nothing (e.g. "reuse models/mnist.onnx")."""
        self._record(PlanItem(title, None, detail=detail or title))
        if not self.dry_run:
            self.console.print(f"[green]✓[/] {escape(title)}" + (f" [dim]{escape(detail)}[/]" if detail else ""))

    # -- running --------------------------------------------------------------------------------

    def run(self, argv: Sequence[str], *, title: str, hint: str = "", note: str = "",
            env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None,
            timeout: float | None = None, show_output: bool = False) -> Result:
        """Run one step of the plan; raises :class:`StepFailed` on a non-zero exit.

        ``show_output`` streams the command's lines under the spinner even without ``--verbose``
        (for long steps whose own progress is the point, like training)."""
        argv = [str(a) for a in argv]
        self._record(PlanItem(title, argv, note=note, env=dict(env or {})))
        if self.dry_run:
            return Result(0, "", "")
        start = time.monotonic()
        with self._spinner(title):
            result = self._execute(argv, env=env, cwd=cwd, timeout=timeout, title=title, hint=hint,
                                   echo=self.verbose or show_output)
        if not result.ok:
            raise StepFailed(title, f"`{argv[0]}` exited with {result.returncode}", argv=argv,
                             returncode=result.returncode, tail=_tail(result.stderr or result.stdout), hint=hint)
        self._done(title, start)
        return result

    def query(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              cwd: str | os.PathLike | None = None, timeout: float | None = 60) -> Result:
        """Run a read-only command and return its result whatever the exit code — for decisions
        such as "does the cluster exist?". Not part of the plan; runs even when dry-running only if
        the caller decides so (callers skip queries in dry-run to keep plans deterministic)."""
        argv = [str(a) for a in argv]
        if self.verbose:
            self._echo(argv)
        return self._execute(argv, env=env, cwd=cwd, timeout=timeout, title=shlex.join(argv[:3]), hint="",
                             echo=False)

    def passthrough(self, argv: Sequence[str], *, title: str, hint: str = "",
                    env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None) -> int:
        """Hand the terminal to a long-running, interactive command (``streamlit run``,
        ``kubectl logs -f``) and return its exit code.

        Ctrl-C stops it and counts as success. SIGTERM/SIGHUP sent to visionctl are passed on to the
        child, which is waited for: without that, Python's default SIGTERM action would end
        visionctl at once and leave the child running, orphaned."""
        argv = [str(a) for a in argv]
        self._record(PlanItem(title, argv, env=dict(env or {})))
        if self.dry_run:
            return 0
        proc = self._start(argv, title=title, hint=hint, env=env, cwd=cwd)
        with forward_signals(proc):
            try:
                return proc.wait()
            except KeyboardInterrupt:
                stop_process(proc, grace=10)
                return 0

    @contextmanager
    def background(self, argv: Sequence[str], *, title: str):
        """Run a helper command (``kubectl port-forward``) for the duration of a block; yields the
        process, and stops it (SIGTERM, then SIGKILL) when the block ends, also when visionctl is
        itself terminated (the signal becomes ``SystemExit``, so ``finally`` runs). Not part of the plan:
        callers wrap it in an :meth:`action`, which is. Raises :class:`StepFailed` if it cannot
        start; its stderr is readable from ``proc.stderr`` once it has exited."""
        argv = [str(a) for a in argv]
        if self.verbose:
            self._echo(argv)
        proc = self._start(argv, title=title, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        try:
            with exit_on_signals():
                yield proc
        finally:
            stop_process(proc)

    # -- internals ------------------------------------------------------------------------------

    def environ(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment commands run with: ours, plus the runner's, plus the step's."""
        merged = dict(os.environ)
        merged.update(self.env)
        merged.update(env or {})
        return merged

    def _which(self, program: str, title: str, hint: str) -> str:
        path = shutil.which(program, path=self.environ(None).get("PATH"))
        if path is None:
            raise StepFailed(title, f"`{program}` is not installed or not on PATH", argv=[program],
                             hint=hint or "run `visionctl doctor` for install instructions")
        return path

    def _start(self, argv: list[str], *, title: str, hint: str = "", env: Mapping[str, str] | None = None,
               cwd: str | os.PathLike | None = None, **popen) -> subprocess.Popen:
        """Start ``argv`` found on the runner's PATH; a missing or unstartable program is a
        :class:`StepFailed` naming the step, never a traceback."""
        exe = self._which(argv[0], title, hint)
        try:
            return subprocess.Popen([exe, *argv[1:]], env=self.environ(env), cwd=cwd, **popen)
        except OSError as exc:
            raise StepFailed(title, f"cannot start `{argv[0]}`: {exc.strerror or exc}", argv=argv, hint=hint) from None

    def _echo(self, argv: list[str]) -> None:
        self.console.print(f"[dim]$ {escape(shlex.join(argv))}[/]", soft_wrap=True, highlight=False)

    def _execute(self, argv: list[str], *, env, cwd, timeout, title: str, hint: str, echo: bool) -> Result:
        proc = self._start(argv, title=title, hint=hint, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                           errors="replace", bufsize=1)
        out: list[str] = []
        errs: list[str] = []

        def pump(stream, sink: list[str]) -> None:
            for line in stream:
                sink.append(line)
                if echo:
                    self.console.print(f"[dim]  │ {escape(line.rstrip())}[/]", soft_wrap=True, highlight=False)
            stream.close()

        readers = [threading.Thread(target=pump, args=(proc.stdout, out), daemon=True),
                   threading.Thread(target=pump, args=(proc.stderr, errs), daemon=True)]
        for t in readers:
            t.start()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            for t in readers:
                t.join(5)
            raise StepFailed(title, f"`{argv[0]}` did not finish within {timeout:g}s", argv=argv,
                             tail=_tail("".join(errs) or "".join(out)), hint=hint) from None
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            raise
        for t in readers:
            t.join()
        return Result(proc.returncode, "".join(out), "".join(errs))

    def _spinner(self, title: str):
        if self.verbose or not self.console.is_terminal:
            # A plain "→ title" line keeps logs readable where a spinner would be noise.
            self.console.print(f"[bold]→[/] {escape(title)}…")
            return _Null()
        progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                            console=self.console, transient=True)
        progress.add_task(escape(title), total=None)
        return progress

    def _done(self, title: str, start: float) -> None:
        self.console.print(f"[green]✓[/] {escape(title)} [dim]({time.monotonic() - start:.1f}s)[/]")


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(deque((line for line in text.rstrip().splitlines()), maxlen=lines))


def stop_process(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if ``proc`` has not exited within ``grace`` seconds; reaps it."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextmanager
def _on_signals(handler: Callable[[int, object], None]) -> Iterator[None]:
    """Install ``handler`` for SIGTERM/SIGHUP for the block, then restore the previous ones. A
    no-op off the main thread (Python lets only the main thread install handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in FORWARDED_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def forward_signals(proc: subprocess.Popen):
    """SIGTERM/SIGHUP to visionctl are sent on to ``proc``; the caller's ``proc.wait()`` then
    returns its exit code, so the child is reaped before visionctl exits."""
    def forward(signum, _frame):
        if proc.poll() is None:
            proc.send_signal(signum)
    return _on_signals(forward)


def exit_on_signals():
    """SIGTERM/SIGHUP raise ``SystemExit(128 + signal)`` instead of ending the interpreter on the
    spot, so ``finally`` blocks (stopping helper processes) still run."""
    def leave(signum, _frame):
        raise SystemExit(128 + signum)
    return _on_signals(leave)
