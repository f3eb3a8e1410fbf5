"""What an ONNX export did and measured (:class:`ExportReport`, one :class:`CheckResult` per
comparison with PyTorch), and the errors an export raises. Shared by the exporter
(:mod:`resnet_pl.deploy.exporters`), the precision converters and the verification, which is
why it sits below all of them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from resnet_pl.errors import ResNetPLError


class ExportOptionError(ResNetPLError, ValueError):
    """An export option that cannot work; the message names the option and the fix."""


class ExportError(ResNetPLError, RuntimeError):
    """The exporter itself failed (and no fallback was allowed or possible)."""


class ExportVerificationError(ResNetPLError, RuntimeError):
    """The exported file does not reproduce PyTorch within tolerance. ``report`` holds every
    check; the message is the table."""

    def __init__(self, message: str, report: ExportReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class CheckResult:
    """One comparison of ONNX Runtime with PyTorch on one batch and one output.

    ``top1_agreement`` and ``top1_mismatches`` are ``None`` for feature maps (outputs of a
    ``features_only`` model), which are judged on ``max_abs_diff`` alone.
    """

    name: str
    data: str  # "random" or "real"
    batch: int
    max_abs_diff: float
    tolerance: float | None  # absolute bound used (None: not gated on max-abs)
    top1_agreement: float | None
    top1_mismatches: int | None  # disagreements that are not ties within tolerance
    gated: bool  # whether this check decides pass/fail
    passed: bool
    output: str = "logits"


@dataclass
class ExportReport:
    """What :func:`resnet_pl.deploy.export_onnx` did and measured. ``str(report)`` is a
    readable table."""

    path: Path
    arch: str
    source: str
    exporter: str
    opset: int
    dtype: str
    input_shape: tuple[int, int, int]
    dynamic_batch: bool
    dynamic_hw: bool
    output_names: list[str] = field(default_factory=lambda: ["logits"])
    features_only: bool = False
    bn_folded: int = 0
    bn_remaining: int = 0  # BatchNormalization nodes in the written graph
    fold_max_abs_diff: float | None = None
    checks: list[CheckResult] = field(default_factory=list)
    accuracy: dict[str, float] = field(default_factory=dict)  # backend -> top-1 accuracy
    accuracy_samples: int = 0
    converter: str | None = None  # fp16 converter / int8 quantiser used
    file_size: int = 0
    sha256: str = ""
    export_seconds: float = 0.0
    total_seconds: float = 0.0
    verified: bool = False
    passed: bool = True
    accuracy_failed: bool = False  # fp16/int8 lost more accuracy than the tolerance allows
    notes: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def max_abs_diff(self) -> dict[str, float]:
        """Max |ONNX - PyTorch| per check name."""
        return {c.name: c.max_abs_diff for c in self.checks}

    @property
    def top1_agreement(self) -> dict[str, float]:
        """Top-1 agreement with PyTorch per check name (checks of classifier outputs)."""
        return {c.name: c.top1_agreement for c in self.checks if c.top1_agreement is not None}

    def table(self) -> str:
        """The checks as a fixed-width text table, then the measured figures."""
        width = max([22, *(len(c.name) for c in self.checks)])
        head = (
            f"{'check':<{width}} {'batch':>5} {'max_abs_diff':>12} {'tolerance':>10} "
            f"{'top1_agree':>10} {'result':>7}"
        )
        lines = [head, "-" * len(head)]
        for c in self.checks:
            tol = f"{c.tolerance:.1e}" if c.tolerance is not None else "-"
            agree = f"{c.top1_agreement:.2%}" if c.top1_agreement is not None else "-"
            result = ("ok" if c.passed else "FAIL") if c.gated else "info"
            lines.append(
                f"{c.name:<{width}} {c.batch:>5} {c.max_abs_diff:>12.3e} {tol:>10} "
                f"{agree:>10} {result:>7}"
            )
        if self.accuracy:
            acc = ", ".join(f"{k} {v:.2%}" for k, v in self.accuracy.items())
            lines.append(f"accuracy on {self.accuracy_samples} real labelled images: {acc}")
        return "\n".join(lines)

    def summary(self) -> str:
        """A few lines: what was written, how, and whether it verified."""
        status = (
            ("verified" if self.passed else "FAILED verification")
            if self.verified
            else "not verified"
        )
        written = (
            f"({self.file_size / 1e6:.2f} MB, sha256 {self.sha256[:16]}...)"
            if self.sha256
            else "(not written)"
        )
        outputs = (
            f"; outputs {', '.join(self.output_names)} (features_only)"
            if self.features_only
            else ""
        )
        lines = [
            f"{self.path} {written}",
            f"  arch {self.arch} from {self.source}; exporter {self.exporter}, opset "
            f"{self.opset}, {self.dtype}, input (N, {', '.join(map(str, self.input_shape))})"
            f"{' dynamic batch' if self.dynamic_batch else ''}"
            f"{' dynamic H/W' if self.dynamic_hw else ''}{outputs}",
            f"  BatchNorm folded: {self.bn_folded} (BatchNormalization nodes left: "
            f"{self.bn_remaining}); "
            f"export {self.export_seconds:.1f} s, total {self.total_seconds:.1f} s; {status}",
        ]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary() + "\n" + self.table()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (paths as strings, per-check maps included)."""
        d = asdict(self)
        d["path"] = str(self.path)
        d["max_abs_diff"] = self.max_abs_diff
        d["top1_agreement"] = self.top1_agreement
        return d
