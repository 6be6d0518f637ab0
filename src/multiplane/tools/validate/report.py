"""One run of `multiplane validate`: its diagnostics (file, line, JSON path, message) and what checks remember.

The checks report through `Run`; it reads no file and judges nothing itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from multiplane.tools.validate.documents import render_path, spell
from multiplane.tools.validate.schemas import errors as model_errors
from multiplane.tools.validate.views import MetaContext

if TYPE_CHECKING:
    from pydantic import ValidationError

    from multiplane.tools.validate.documents import Loc, Where
    from multiplane.tools.validate.views import Nad, PodView, Pool

__all__ = ["DEFAULT_CONF_DIR", "Diagnostic", "Run"]

DEFAULT_CONF_DIR = "/etc/cni/multiplane/net.d"


class Diagnostic:
    """One error or warning, about one path of one document."""

    __slots__ = ("severity", "file", "line", "path", "message", "document")

    def __init__(self, severity: str, file: str, line: int | None, path: str, message: str, document: int) -> None:
        self.severity, self.file, self.line, self.path = severity, file, line, path
        self.message, self.document = message, document

    def human(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.severity}: {self.path}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "file": self.file,
            "line": self.line,
            "document": self.document,
            "path": self.path,
            "message": self.message,
        }


class Run:
    """Diagnostics and what the cross-document checks need, for one `multiplane validate`."""

    def __init__(
        self,
        node_addrs: list[Any] | None = None,
        conf_dir: str = "",
        namespace: str = "default",
    ) -> None:
        self.diagnostics: list[Diagnostic] = []
        self._seen: set[tuple[str, int, str, str, str]] = set()
        self.node_addrs = node_addrs or []
        self.conf_dir_flag = conf_dir
        self.namespace = namespace
        self.meta = MetaContext()
        self.nads: list[Nad] = []
        self.pods: list[PodView] = []
        self.pools: list[Pool] = []
        self.documents: list[dict[str, Any]] = []

    @property
    def conf_dir(self) -> str:
        return self.conf_dir_flag or self.meta.conf_dir or DEFAULT_CONF_DIR

    @property
    def errors(self) -> int:
        return sum(1 for d in self.diagnostics if d.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for d in self.diagnostics if d.severity == "warning")

    def add(self, severity: str, where: Where, loc: Loc, message: str, line: int | None = None) -> None:
        """Record a diagnostic once (the same one reached twice is kept once); `line` overrides the lookup."""
        path = render_path(loc)
        key = (where.file, where.doc, path, message, severity)
        if key in self._seen:
            return
        self._seen.add(key)
        self.diagnostics.append(
            Diagnostic(severity, where.file, line if line is not None else where.line(loc), path, message, where.doc)
        )

    def error(self, where: Where, loc: Loc, message: str, line: int | None = None) -> None:
        self.add("error", where, loc, message, line)

    def warning(self, where: Where, loc: Loc, message: str, line: int | None = None) -> None:
        self.add("warning", where, loc, message, line)

    def pydantic(self, where: Where, root: Loc, exc: ValidationError, original: Any) -> None:
        """Every error of a model's validation, at its path in `original` (spelled as written there)."""
        for err in exc.errors(include_url=False):
            self.error(where, root + spell(model_errors.error_loc(err), original), model_errors.message(err))

    def note(self, where: Where, root: Loc, kind: str, name: str) -> None:
        """Record a checked document (the --json report's `documents`)."""
        self.documents.append(
            {
                "file": where.file,
                "document": where.doc,
                "line": where.line(root),
                "path": render_path(root),
                "kind": kind,
                "name": name,
            }
        )
