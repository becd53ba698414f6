"""Text for people: every function takes data and returns a string; only the CLI prints."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpack.manifest import parity_disagreement

if TYPE_CHECKING:  # report renders data; importing these at run time would pull numpy into every command
    from mlpack.compare import OutputComparison
    from mlpack.inspector import Inspection
    from mlpack.machines import Matrix
    from mlpack.manifest import ReferenceInfo, TensorSpec
    from mlpack.package import Package
    from mlpack.verifier import Report


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return "0" if value == 0 else f"{value:.3g}"


def _output_line(c: OutputComparison) -> str:
    state = "identical" if c.identical else ("within tolerance" if c.passed else "MISMATCH")
    if c.problem:
        return f"    {c.name:<16} {state:<17} {c.problem}"
    detail = f"{c.total} values"
    if c.kind == "label":
        if not c.identical:
            differ = c.total - c.identical_elements
            detail += f", {differ} differ" + (f" ({c.tied_rows} tied rows excused)" if c.tied_rows else "")
    else:
        detail += f", max abs {_num(c.max_abs)}, max rel {_num(c.max_rel)}, max ulp {c.max_ulp if c.max_ulp is not None else '-'}"
        if c.outside:
            detail += f", {c.outside} outside tolerance"
    line = f"    {c.name:<16} {state:<17} {detail}"
    if not c.identical and c.kind != "label" and c.total:
        line += "\n" + _spread_line(c)
    if c.worst and not c.passed:
        line += f"\n    {'':<16} worst at {c.worst['index']}: expected {c.worst['expected']!r}, got {c.worst['actual']!r}"
    return line


def _tolerances(applied: dict[str, dict[str, Any]], overrides: dict[str, Any]) -> str:
    """What each output was judged with; one looser than tenfold mlpack's default is marked."""
    parts = []
    for name, tol in applied.items():
        if "labels" in tol:
            parts.append(f"{name} {tol['labels']}")
            continue
        text = f"{name} atol {_num(tol['atol'])} rtol {_num(tol['rtol'])}"
        if name in overrides:
            text += " (this run's)"
        elif tol.get("looser_than_default"):
            text += " (LOOSER: over 10x mlpack's default for its kind)"
        parts.append(text)
    return "; ".join(parts)


def _spread_line(c: OutputComparison) -> str:
    """How the differences of a float output spread, and what they mean for a reader deciding on them."""
    share = c.identical_elements / c.total
    parts = [
        f"{c.identical_elements}/{c.total} ({share:.1%}) bit-identical",
        f"abs mean {_num(c.mean_abs)} median {_num(c.median_abs)} p99 {_num(c.p99_abs)}",
        f"rel median {_num(c.median_rel)} p99 {_num(c.p99_rel)}",
    ]
    if c.min_atol is not None:
        parts.append(f"passes from atol {_num(c.min_atol)}")
    if c.nan_mismatches or c.inf_mismatches:
        parts.append(f"NaN at {c.nan_mismatches} other places, inf at {c.inf_mismatches}")
    if c.top1_agreement is not None:
        parts.append(f"top-1 agrees {c.top1_agreement:.1%}, top-{c.k} {c.topk_agreement:.1%}")
    if c.min_cosine is not None:
        parts.append(f"min cosine {c.min_cosine:.6f}")
    return f"    {'':<16} " + "; ".join(parts)


def _changes(changes: list[dict[str, Any]], limit: int) -> list[str]:
    lines = []
    for change in changes[:limit]:
        if change["change"] == "missing":
            lines.append(f"      {change['name']}: {change['locked']} locked, missing here")
        elif change["change"] == "extra":
            lines.append(f"      {change['name']}: {change['here']} here, not in the build lock")
        elif change["change"] == "altered":
            lines.append(f"      {change['name']} {change['here']}: same version, installed files differ")
        else:
            lines.append(f"      {change['name']}: {change['locked']} locked, {change['here']} here")
    if len(changes) > limit:
        lines.append(f"      … {len(changes) - limit} more (--json lists all)")
    return lines


def render_verify(report: Report) -> str:
    lines = [f"{report.name} {report.version}  {report.digest}", f"  package      {report.package}"]
    if report.integrity:
        lines.append("  integrity    FAILED")
        lines += [f"      {p.file}: {p.kind}: {p.detail}" for p in report.integrity[:20]]
        if len(report.integrity) > 20:
            lines.append(f"      … {len(report.integrity) - 20} more (--json lists all)")
    else:
        lines.append("  integrity    every file matches the manifest")
    if report.signature:
        status = report.signature.get("status", "")
        lines.append(
            f"  signature    {'FAILED' if status == 'failed' else status}: {report.signature.get('detail', '')}"
        )
    if report.judged == "saved" and report.verdict != "tampered":
        lines.append("  judged       saved outputs against the golden outputs (the model was not run here)")
    elif report.verdict != "tampered":
        runtime, build = report.environment.get("runtime", []), report.environment.get("build", [])
        lines.append(
            "  runtime env  " + ("matches the runtime lock" if not runtime else f"{len(runtime)} difference(s)")
        )
        lines += _changes(runtime, 50)
        significant = [c for c in build if c["change"] != "extra"]
        if not report.build_env_compared:
            lines.append("  build env    not compared: nothing to explain (--full compares it)")
        elif not significant:
            lines.append("  build env    matches the build lock")
        else:
            lines.append(f"  build env    {len(significant)} difference(s) from the build lock (informational)")
        lines += _changes(significant, 8)
        numeric = [c for c in report.hardware if c["moves_numbers"]]
        lines.append(
            "  hardware     "
            + (
                "same as at build"
                if not report.hardware
                else f"{len(report.hardware)} difference(s), {len(numeric)} can move numbers"
            )
        )
        for c in report.hardware[:12]:
            mark = "*" if c["moves_numbers"] else " "
            if "only_built" in c:
                lines.append(
                    f"    {mark} {c['field']}: only at build {c['only_built']}, only here {c['only_here']}"
                )
            else:
                lines.append(f"    {mark} {c['field']}: {c['built']} → {c['here']}")
        s = report.session
        lines.append(
            f"  session      {s.get('intra_op_num_threads')} thread(s), {s.get('graph_optimization_level')}, "
            f"{', '.join(s.get('providers', []))}"
        )
    if report.outputs:
        lines.append("  outputs")
        lines += [_output_line(c) for c in report.outputs]
    if report.tolerances:
        lines.append(f"  tolerances   {_tolerances(report.tolerances, report.tolerance_overrides)}")
    if report.proven:
        lines.append(f"  proven       {report.proven['message']}")
    if report.parity.get("disagreement"):
        lines.append(
            f"  parity       ACCEPTED at build: disagrees with the native model: {report.parity['disagreement']}"
        )
    if report.causes:
        lines.append("  likely causes")
        lines += [f"    - {cause}" for cause in report.causes]
    lines.append(f"verdict: {report.verdict}{'' if report.passed else ' (FAILED)'}  ({report.seconds:.2f} s)")
    lines.append(report.message)
    return "\n".join(lines)


def _coverage(coverage: dict[str, Any]) -> list[str]:
    """What parity covered beyond the golden rows, and a warning for classes no golden row shows."""
    parts, lines = [], []
    for name, seen in (coverage.get("labels") or {}).items():
        parts.append(f"{name}: golden rows show {seen['classes_seen']} of {seen['classes']} classes")
        if seen["classes_seen"] < seen["classes"]:
            lines.append(
                f"  WARNING       the golden rows give {seen['classes_seen']} of the {seen['classes']} classes of "
                f"{name}: parity and verify never check the others (give a sample with rows of every class)"
            )
    if coverage.get("probes"):
        parts.append(f"{len(coverage['probes'])} probe(s) beyond them: {', '.join(coverage['probes'][:4])}"
                     + (", …" if len(coverage["probes"]) > 4 else ""))  # fmt: skip
    return ([f"  coverage      {'; '.join(parts)}"] if parts else []) + lines


def render_build(package: Package) -> str:
    m = package.manifest
    parts = []
    for out in m.parity.outputs if m.parity else ():
        if out.get("problem"):
            parts.append(f"{out['name']} {out['problem']}")
        elif out["identical"]:
            parts.append(f"{out['name']} identical")
        elif out["kind"] == "label":
            parts.append(f"{out['name']} {out['outside']} differ ({out['tied_rows']} tied)")
        else:
            parts.append(f"{out['name']} max abs {_num(float(out['max_abs']))}")
    runtime = m.environment.runtime_lock
    runtime_text = (
        f"{runtime.get('packages')} packages with hashes ({runtime.get('tool')})"
        if runtime.get("status") == "complete"
        else f"missing: {runtime.get('reason')}"
    )
    build_lock = m.environment.build_lock
    source = m.source
    return "\n".join(
        [
            f"built {package.name} {package.version} → {package.path}",
            f"  digest        {package.digest}",
            f"  model         {source.model_class if source else '?'} ({source.framework if source else '?'} "
            f"{source.framework_version if source else ''}), opsets {m.model.opset_imports}",
            f"  parity        {m.parity.status if m.parity else '-'}: {'; '.join(parts)}",
            *(
                [
                    f"  WARNING       this package disagrees with the native model ({parity_disagreement(m.parity)}): "
                    "parity was accepted with --accept-parity; verify --strict fails on it"
                ]
                if parity_disagreement(m.parity)
                else []
            ),
            f"  golden        {_golden(m.reference)}",
            *_coverage(m.parity.coverage if m.parity else {}),
            *([f"  proven on     {_proven_classes(m.machines)}"] if m.machines else []),
            f"  build lock    {build_lock.get('packages')} packages, {build_lock.get('with_artifact_hash')} with "
            "artifact hashes" + (f" ({build_lock['reason']})" if build_lock.get("reason") else ""),
            f"  runtime lock  {runtime_text}",
            f"Verify it anywhere with: mlpack verify {package.path}",
        ]
    )


def _signature(specs: tuple[TensorSpec, ...]) -> str:
    return ", ".join(f"{s.name} {s.type.removeprefix('tensor(').rstrip(')')}{list(s.shape)}" for s in specs)


def render_inspect(info: Inspection) -> str:
    m = info.manifest
    source = m.source
    lines = [
        f"{m.name} {m.version}  {info.digest}",
        f"  created      {m.created} by mlpack {m.mlpack_version}",
        f"  source       {source.model_class if source else '?'} ({source.framework if source else '?'} "
        f"{source.framework_version if source else ''})",
        f"  model        {m.model.file} sha256 {m.model.sha256[:16]}…, opsets {m.model.opset_imports}",
        f"  inputs       {_signature(m.model.inputs)}",
        f"  outputs      {_signature(m.model.outputs)}",
        f"  parity       {m.parity.status if m.parity else '-'}"
        + (
            f" at build: disagrees with the native model: {parity_disagreement(m.parity)}"
            if parity_disagreement(m.parity)
            else ""
        ),
        f"  reference    {_golden(m.reference)}",
        *([f"  proven on    {_proven_classes(m.machines)}"] if m.machines else []),
        f"  runtime      onnxruntime {m.runtime.onnxruntime}, {m.runtime.session.intra_op_num_threads} thread(s)",
        f"  hardware     {m.hardware.cpu} ({m.hardware.logical_cores} cores)",
        "  files",
    ]
    lines += [
        f"    {f.path:<24} {f.bytes if f.bytes is not None else 'MISSING':>10}  {f.sha256[:16]}…"
        for f in info.files
    ]
    return "\n".join(lines)


def render_remote(remote: dict[str, Any]) -> str:
    """``mlpack inspect REF``: a pushed package and what refers to it."""
    lines = [
        f"{remote['name']} {remote['version']}  {remote['package_digest']}",
        f"  reference    {remote['reference']}",
        f"  artifact     {remote['digest']}",
        "  files",
        *(f"    {f['path']:<28} {f['size']:>10}  {f['digest'][7:23]}…" for f in remote["files"]),
        f"  referrers    {len(remote['referrers'])} (from the {remote['referrers_via']})",
        *(f"    {r['kind'] or '-':<12} {r['title'] or '-':<28} {r['artifactType']}  {str(r['digest'])[7:23]}…"
          for r in remote["referrers"]),
    ]  # fmt: skip
    return "\n".join(lines)


def render_hardware(profile: dict[str, Any]) -> str:
    cpu = profile["cpu"]
    ort = profile["onnxruntime"]
    blas = ", ".join(profile["blas"])
    gpus = ", ".join(f"{g['name']} (driver {g['driver']}, CUDA {g['cuda']})" for g in profile["gpus"]) or "none"
    return "\n".join(
        [
            f"cpu          {cpu['vendor']} {cpu['model']} ({cpu['arch']}), {cpu['logical_cores']} logical / "
            f"{cpu['physical_cores']} physical cores",
            f"level        {cpu.get('level', 'not recorded')} (as numpy's CPU dispatch sees it; emulation shows here)",
            f"vector ISA   {' '.join(cpu['numeric_flags']) or 'none recognised'} (/proc/cpuinfo)",
            f"memory       {profile['memory_bytes'] / 2**30:.1f} GiB",
            f"os           {profile['os']['distribution'] or profile['os']['system']}, kernel {profile['os']['kernel']}, "
            f"{profile['os']['libc']}",
            f"python       {profile['python']['implementation']} {profile['python']['version']} ({profile['python']['compiler']})",
            f"numpy        {profile['numpy']['version']}, dispatch {' '.join(profile['numpy']['dispatch'])}",
            f"blas         {blas or 'not found'}",
            f"onnxruntime  {ort['version']}, providers {', '.join(ort['providers'])}",
            f"gpus         {gpus}",
        ]
    )


def render_lock(folder: Path, summary: dict[str, Any]) -> str:
    build_lock, runtime = summary["build_lock"], summary["runtime_lock"]
    lines = [
        f"wrote {folder / 'pylock.toml'}: {build_lock['packages']} packages, "
        f"{build_lock['with_artifact_hash']} with artifact hashes"
    ]
    if runtime["status"] == "complete":
        lines.append(f"wrote {folder / 'requirements.lock'}: {runtime['packages']} packages ({runtime['tool']})")
    else:
        lines.append(f"no requirements.lock: {runtime['reason']}")
    return "\n".join(lines)


def render_matrix(matrix: Matrix) -> str:
    """One line per machine class and output, then the causes, then the overall verdict (worst wins)."""
    lines = [f"{matrix.package}", f"  {'machine':<12} {'run as':<30} {'verdict':<11} output"]
    for r in matrix.results:
        if not r.outputs:
            lines.append(f"  {r.machine:<12} {r.how:<30} {r.verdict:<11} {r.message}")
            continue
        for i, out in enumerate(r.outputs):
            head = f"  {r.machine:<12} {r.how:<30} {r.verdict:<11}" if i == 0 else f"  {'':<12} {'':<30} {'':<11}"
            state = "identical" if out["identical"] else ("within tolerance" if out["passed"] else "MISMATCH")
            figures = "" if out["identical"] or out.get("problem") else (
                f", max abs {_num(_float(out['max_abs']))}, max rel {_num(_float(out['max_rel']))}, "
                f"max ulp {out['max_ulp'] if out['max_ulp'] is not None else '-'}, "
                f"{out['total'] - out.get('identical_elements', 0)}/{out['total']} not bit-identical"
            )  # fmt: skip
            lines.append(
                f"{head} {out['name']}: {state}{figures}{'; ' + out['problem'] if out.get('problem') else ''}"
            )
    for name, reason in matrix.left_out.items():
        lines.append(f"  {name:<12} {'not run here':<30} {'':<11} {reason}")
    lines += [f"  {r.machine} ran {r.runtime}" for r in matrix.results if r.runtime]
    causes = [(r.machine, cause) for r in matrix.results for cause in r.causes]
    if causes:
        lines.append("  likely causes")
        lines += [f"    - {machine}: {cause}" for machine, cause in causes]
    lines.append(
        f"verdict: {matrix.verdict}{'' if matrix.passed else ' (FAILED)'}  "
        f"(worst of {len(matrix.results)} machine class{'es' if len(matrix.results) != 1 else ''})"
    )
    return "\n".join(lines)


def _float(value: Any) -> float:
    return float(value)  # JSON gives "inf" and "nan" as strings


def _golden(info: ReferenceInfo) -> str:
    rows = f"{info.rows} row{'s' if info.rows != 1 else ''}"
    return f"{info.runs} golden runs of {rows} each" if info.runs > 1 else f"{rows} of golden inputs"


def _proven_classes(evidence: Any) -> str:
    """The classes build --machines replayed on: each one's verdict, the largest ulp, and whether it was accepted."""
    parts = []
    for entry in evidence:
        ulps = [o["max_ulp"] for o in entry.get("outputs", []) if o.get("max_ulp") and not o.get("identical")]
        figure = f" (max ulp {max(ulps)})" if ulps else ""
        accepted = ", accepted at build" if entry.get("accepted") else ""
        parts.append(f"{entry.get('machine')} {entry.get('verdict')}{figure}{accepted}")
    return ", ".join(parts) + " (emulated)"
