#!/usr/bin/env python3
"""Renders fp8flow's convergence-risk report (issue 9; docs/report.md) as one self-contained HTML page.

Called by `fp8flow report` (src/cli/cmd_report.cpp) with the venv interpreter:

    render_report.py --data PAYLOAD.json --out REPORT.html [--quiet]

PAYLOAD is written by the C++ command: {file, generated, fp8flow_version, git_commit, assessment, runs}, where
`assessment` is the risk rules' result (src/report/risk.cpp, the single source of every verdict) and `runs`
every run of the store as `fp8flow show --json` prints it (tables as {column: [values]}, non-finite numbers as
null). This script only draws: plots are matplotlib PNGs embedded as base64 data URIs, so the page loads no
external resource and runs no script. Every number shown links to the run it came from (#run-<hash>).
"""
import argparse
import base64
import html
import io
import json
import math
import sys
from collections import defaultdict

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
except ImportError as e:  # pragma: no cover - reported to the user by fp8flow report
    sys.exit(f"render_report.py: {e}: the report needs numpy and matplotlib (run scripts/setup to create .venv)")

STATUS_COLOR = {"pass": "#1a7f37", "warn": "#b35900", "inconclusive": "#6639ba", "fail": "#cf222e", "n/a": "#6e7781"}
STATUS_ORDER = ["pass", "warn", "inconclusive", "fail"]  # risk.hpp's Status order (n/a apart)
LOSS_RULE = "loss_rel_error"


def unit_label(u):
    """A rule's unit as a reader sees it ("1" is a plain fraction)."""
    return "fraction" if u == "1" else u
DATAFLOW_ORDER = ["fp64", "bf16", "fp8_blockwise_bf16_dispatch", "fp8_blockwise", "fp8_double_quant",
                  "fp8_flow(paper_kernel)", "fp8_flow(exact)"]  # risk.cpp's order; controls (ctl_*) after
DF_COLOR = {"fp64": "#000000", "bf16": "#0969da", "fp8_blockwise": "#8250df", "fp8_double_quant": "#cf222e",
            "fp8_flow(paper_kernel)": "#1a7f37", "fp8_flow(exact)": "#bf8700", "ctl_e5m2_fwd": "#953800",
            "ctl_per_tensor_act": "#57606a", "fp8_blockwise_bf16_dispatch": "#0a3069"}
TRANSPOSE_METHODS = ["naive", "paper_kernel", "exact", "direct"]
MOE_OUTPUTS = ["y", "dx", "dw1", "dw2", "dwr"]

esc = html.escape


def anchor(s):
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in s)


def run_link(h):
    return f'<a href="#run-{esc(h)}"><code>{esc(h)}</code></a>'


def fmt(v, digits=4):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    a = abs(v)
    if a != 0 and (a < 1e-3 or a >= 1e5):
        return f"{v:.3g}"
    return f"{v:.{digits}g}"


def badge(status):
    return f'<span class="badge" style="background:{STATUS_COLOR.get(status, "#6e7781")}">{esc(status)}</span>'


def png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def df_of(run):
    p = run["params"]
    d = p.get("dataflow", "")
    if isinstance(d, list):
        d = d[0] if len(d) == 1 else ",".join(map(str, d))
    if d == "fp8_flow":
        return f"fp8_flow({p.get('transpose') or 'paper_kernel'})"
    return d


def df_sort_key(d):
    return (DATAFLOW_ORDER.index(d) if d in DATAFLOW_ORDER else len(DATAFLOW_ORDER), d)


def col(run, table, name):
    return run["tables"][table]["columns"][name]


def num(values):
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def group_key(run):
    p = {k: v for k, v in run["params"].items() if k not in ("dataflow", "transpose", "seed")}
    return json.dumps(p, sort_keys=True)


def runs_line(hashes):
    hs = sorted(set(hashes))
    return "Runs: " + ", ".join(run_link(h) for h in hs) if hs else ""


# ---- Sections -------------------------------------------------------------------------------------

def loss_cell(r):
    """The loss rule's decision with its interval, seeds and reference (risk.cpp's LossStats)."""
    if r is None or r.get("seeds") is None:
        return esc(r["message"]) if r else ""
    ci = (f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}] %" if r.get("ci_low") is not None else "no interval (one seed)")
    more = ""
    if r["status"] == "inconclusive":
        more = (f"; ~{r['seeds_to_decide']} seeds would decide" if r.get("seeds_to_decide")
                else "; at least 2 seeds needed" if r["seeds"] < 2 else "")
    return (f"<span class='loss'>{fmt(r.get('mean'))} % vs {esc(r['reference'])}, 95% CI {ci}, "
            f"{r['seeds']} seed{'s' if r['seeds'] != 1 else ''}{more}</span>")


def section_verdicts(a):
    counts = defaultdict(lambda: defaultdict(int))
    for r in a["results"]:
        counts[r["dataflow"]][r["status"]] += 1
    by = {(r["rule"], r["dataflow"]): r for r in a["results"]}
    rows = []
    for d in a["dataflows"]:
        c = counts[d]
        worst = [r for r in a["results"] if r["dataflow"] == d and r["status"] == a["verdicts"][d] and r["status"] != "n/a"]
        why = "; ".join(f'<a href="#ev-{anchor(r["rule"] + "-" + d)}">{esc(r["rule"])}</a>' for r in worst)
        lr = by.get((LOSS_RULE, d))
        rows.append(f"<tr data-dataflow='{esc(d)}'><td><b>{esc(d)}</b></td><td class='verdict'>{badge(a['verdicts'][d])}</td>"
                    + "".join(f"<td>{c[k]}</td>" for k in ("fail", "inconclusive", "warn", "pass", "n/a"))
                    + f"<td>{badge(lr['status']) + ' ' + loss_cell(lr) if lr else ''}</td>"
                    f"<td>{why if a['verdicts'][d] in ('warn', 'inconclusive', 'fail') else ''}</td></tr>")
    return ("<h2 id='verdicts'>Verdict per dataflow</h2><p>The verdict is the worst graded rule (pass &lt; warn &lt; "
            "inconclusive &lt; fail); <i>n/a</i> rules (no data) never count as pass. The loss criterion is decided by "
            "the 95% interval over paired seeds: pass inside ±0.25%, fail outside, otherwise inconclusive with the "
            "seeds that would decide. Rules, thresholds and their calibration: docs/risk.md.</p>"
            "<table id='verdict-table'><tr><th>dataflow</th><th>verdict</th><th>fail</th><th>inconclusive</th><th>warn</th>"
            "<th>pass</th><th>n/a</th><th>loss criterion (relative final-loss error)</th><th>deciding rules</th></tr>"
            + "".join(rows) + "</table>")


def section_risk_table(a):
    rules = a["rules"]
    by = {(r["rule"], r["dataflow"]): r for r in a["results"]}
    head = "".join(f"<th>{esc(d)}</th>" for d in a["dataflows"])
    rows = []
    for rule in rules:
        cells = []
        for d in a["dataflows"]:
            r = by.get((rule["id"], d))
            if r is None:
                cells.append("<td></td>")
                continue
            if rule["id"] == LOSS_RULE and r.get("seeds"):
                v = f"<br><small>{loss_cell(r)}</small>"
            else:
                v = "" if r["value"] is None else f"<br><small>{fmt(r['value'])} {esc(unit_label(rule['unit']))}</small>"
            cells.append(f'<td><a href="#ev-{anchor(rule["id"] + "-" + d)}">{badge(r["status"])}</a>{v}</td>')
        thr = (f"{'≥' if rule['worse'] == 'higher' else '≤'} {fmt(rule['warn'])} / {fmt(rule['fail'])} {esc(unit_label(rule['unit']))}")
        if rule["id"] == LOSS_RULE:
            thr = "95% interval vs ±0.25 %"
        rows.append(f"<tr><td><b>{esc(rule['title'])}</b><br><small><code>{esc(rule['id'])}</code></small></td>"
                    f"<td><small>{thr}</small></td>{''.join(cells)}</tr>")
    return ("<h2 id='risks'>Risk table</h2><p>Each cell links to its evidence. Thresholds: warn / fail.</p>"
            f"<table><tr><th>rule</th><th>warn / fail</th>{head}</tr>" + "".join(rows) + "</table>")


def section_evidence(a):
    rules = {r["id"]: r for r in a["rules"]}
    out = ["<h2 id='evidence'>Evidence</h2>"]
    for rule in a["rules"]:
        out.append(f"<h3 id='rule-{anchor(rule['id'])}'>{esc(rule['title'])} (<code>{esc(rule['id'])}</code>)</h3><p class='reason'>{esc(rule['reason'])}"
                   f"<br><small>Source: {esc(rule['source'])}</small></p>")
        for r in [x for x in a["results"] if x["rule"] == rule["id"]]:
            unit = rules[r["rule"]]["unit"]
            out.append(f'<div class="ev" id="ev-{anchor(r["rule"] + "-" + r["dataflow"])}"><b>{esc(r["dataflow"])}</b> '
                       f'{badge(r["status"])} {esc(r["message"])}')
            if r["evidence"]:
                rows = []
                for e in r["evidence"]:
                    rows.append("<tr>" + "".join(f"<td>{x}</td>" for x in [
                        run_link(e["run"]), esc(e.get("kind", "")), esc(e.get("table", "")), esc(e.get("tensor", "")),
                        fmt(e.get("layer")), fmt(e.get("expert")), fmt(e.get("step")), fmt(e.get("seed")),
                        f"{fmt(e.get('value'))} {esc(unit_label(unit))}", esc(e.get("note", ""))]) + "</tr>")
                out.append("<table class='small'><tr><th>run</th><th>kind</th><th>table</th><th>tensor</th><th>layer</th>"
                           "<th>expert</th><th>step</th><th>seed</th><th>value</th><th>note</th></tr>" + "".join(rows) + "</table>")
            out.append("</div>")
    return "".join(out)


def section_training(runs, a):
    train = [r for r in runs if r["kind"] == "train" and "steps" in r["tables"]]
    if not train:
        return ("<h2 id='training'>Training: loss curves and relative loss error</h2><p class='na'>No training runs "
                "(kind <code>train</code>) in this file: run <code>fp8flow train --preset tiny --dataflow all -o FILE</code>."
                "</p>")
    out = ["<h2 id='training'>Training: loss curves and relative loss error</h2>"]
    groups = defaultdict(lambda: defaultdict(dict))  # group -> df -> seed -> run
    for r in train:
        groups[group_key(r)][df_of(r)][r["params"].get("seed", 0)] = r
    # The statistic of each group comes from the assessment (risk.cpp, paired_stats.hpp): never recomputed here.
    stats = defaultdict(dict)  # group -> df -> loss_groups entry
    for g in a.get("loss_groups", []):
        stats[json.dumps(g["group"], sort_keys=True)][g["dataflow"]] = g
    for gk, by_df in groups.items():
        params = json.loads(gk)
        title = ", ".join(f"{k}={v}" for k, v in params.items() if k in ("preset", "steps", "layers", "experts", "lr")
                          and v not in (0, None))
        dfs = sorted(by_df, key=df_sort_key)
        fig, axes = plt.subplots(1, 3, figsize=(17, 5), layout="constrained")
        for d in dfs:
            curves = []
            for seed, r in sorted(by_df[d].items()):
                st = num(col(r, "steps", "step"))
                lo = num(col(r, "steps", "loss"))
                axes[0].plot(st, lo, color=DF_COLOR.get(d), alpha=0.25, lw=0.7)
                curves.append((st, lo))
            n = min(len(c[1]) for c in curves)
            axes[0].plot(curves[0][0][:n], np.mean([c[1][:n] for c in curves], axis=0), color=DF_COLOR.get(d), lw=1.4,
                         label=f"{d} ({len(curves)} seed{'s' if len(curves) > 1 else ''})")
        axes[0].set(xlabel="step", ylabel="training loss (nats/byte)")
        axes[0].set_title("Loss: mean over seeds (thin: each seed)", fontsize=11)
        axes[0].legend(fontsize=9)
        bars = []
        for d in dfs:
            g = stats.get(gk, {}).get(d)
            if d == "fp64" or g is None:
                continue
            ref = by_df.get(g["reference"], {})
            step_rel = []
            for seed, r in by_df[d].items():
                if seed not in ref:
                    continue
                lo, l0 = num(col(r, "steps", "loss")), num(col(ref[seed], "steps", "loss"))
                n = min(len(lo), len(l0))
                w = max(1, n // 20)
                kern = np.ones(w) / w
                step_rel.append(100 * (np.convolve(lo[:n], kern, "valid") - np.convolve(l0[:n], kern, "valid"))
                                / np.convolve(l0[:n], kern, "valid"))
            if step_rel:
                m = min(len(x) for x in step_rel)
                axes[1].plot(np.arange(m) + (w - 1), np.mean([x[:m] for x in step_rel], axis=0), color=DF_COLOR.get(d),
                             label=f"{d} vs {g['reference']}")
            bars.append(g)
        for ax in axes[1:]:
            ax.axhspan(-0.25, 0.25, color="#1a7f37", alpha=0.08, label="paper criterion ±0.25%")
            ax.axhline(0, color="k", lw=0.5)
        axes[1].set(xlabel="step", ylabel="relative loss error (%)")
        axes[1].set_title("Relative loss error per step\n(moving mean over 5% of steps)", fontsize=11)
        axes[1].legend(fontsize=9)
        if bars:
            xs = np.arange(len(bars))
            mean = [np.nan if b["mean"] is None else b["mean"] for b in bars]
            lo = [0 if b["ci_low"] is None else b["mean"] - b["ci_low"] for b in bars]
            hi = [0 if b["ci_high"] is None else b["ci_high"] - b["mean"] for b in bars]
            axes[2].bar(xs, mean, yerr=[lo, hi], capsize=4, color=[DF_COLOR.get(b["dataflow"], "#888") for b in bars])
            axes[2].set_xticks(xs, [f"{b['dataflow']}\nvs {b['reference']}, n={b['seeds']}\n{b['status']}" for b in bars],
                               fontsize=9, rotation=0)
        axes[2].set_ylabel("relative final-loss error (%)")
        axes[2].set_title("Final relative loss error:\nmean and 95% CI over paired seeds", fontsize=11)
        fig.suptitle(title, fontsize=11)
        out.append(png(fig))
        rows = "".join(
            f"<tr><td>{esc(b['dataflow'])}</td><td>{esc(b['reference'])}</td><td>{fmt(b['mean'])} %</td>"
            f"<td>{'[' + fmt(b['ci_low']) + ', ' + fmt(b['ci_high']) + '] %' if b['ci_low'] is not None else 'one seed'}</td>"
            f"<td>{b['seeds']}</td><td>{badge(b['status'])}</td>"
            f"<td>{b['seeds_to_decide'] if b.get('seeds_to_decide') else ''}</td></tr>" for b in bars)
        out.append(f"<p>{esc(title)}. Final loss = mean training loss over the last 10% of steps; relative error per "
                   "paired seed against the reference run of the same seed (same initial weights and batches): bf16 for "
                   "the FP8 dataflows, fp64 for bf16.</p>")
        if rows:
            out.append("<table><tr><th>dataflow</th><th>vs</th><th>mean rel. loss error</th><th>95% CI</th><th>seeds</th>"
                       "<th>decision</th><th>seeds to decide</th></tr>" + rows + "</table>")
        out.append("<p class='prov'>" + runs_line(r["hash"] for d in by_df.values() for r in d.values()) + "</p>")
    return "".join(out)


def section_heatmaps(runs):
    train = [r for r in runs if r["kind"] == "train" and "grad_error" in r["tables"]]
    out = ["<h2 id='experts'>Per-expert weight-gradient SQNR</h2>"]
    cells = defaultdict(lambda: defaultdict(list))  # df -> (layer, tensor, expert) -> [sqnr]
    used = defaultdict(list)
    for r in train:
        t = r["tables"]["grad_error"]["columns"]
        d = df_of(r)
        if d == "fp64":
            continue
        for s, l, tn, e, q in zip(t["step"], t["layer"], t["tensor"], t["expert"], t["sqnr_db"]):
            if e >= 0 and tn in ("dw1", "dw2"):
                cells[d][(l, tn, e)].append(np.nan if q is None else q)
                used[d].append(r["hash"])
    if not cells:
        return out[0] + "<p class='na'>No per-expert gradient rows (train runs' grad_error) in this file.</p>"
    dfs = sorted(cells, key=df_sort_key)
    vals = [np.nanmedian(v) for d in dfs for v in cells[d].values() if np.isfinite(np.nanmedian(v))]
    vmin, vmax = (min(vals), max(vals)) if vals else (0, 1)
    fig, axes = plt.subplots(1, len(dfs), figsize=(4.4 * len(dfs) + 1.5, 3.8), squeeze=False, layout="constrained")
    for ax, d in zip(axes[0], dfs):
        rows = sorted({(l, tn) for (l, tn, e) in cells[d]})
        experts = sorted({e for (_, _, e) in cells[d]})
        m = np.full((len(rows), len(experts)), np.nan)
        for i, (l, tn) in enumerate(rows):
            for j, e in enumerate(experts):
                v = cells[d].get((l, tn, e))
                if v:
                    m[i, j] = np.nanmedian(v)
        im = ax.imshow(m, aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax)
        ax.set_yticks(range(len(rows)), [f"L{l} {tn}" for l, tn in rows], fontsize=9)
        ax.set_xticks(range(len(experts)), [str(e) for e in experts], fontsize=9)
        ax.set_xlabel("expert")
        ax.set_title(d, fontsize=11)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if np.isfinite(m[i, j]) and m.size <= 128:
                    light = (m[i, j] - vmin) / max(vmax - vmin, 1e-9) > 0.6  # viridis turns yellow: dark text
                    ax.text(j, i, f"{m[i, j]:.1f}", ha="center", va="center", fontsize=9, color="k" if light else "w")
    cb = fig.colorbar(im, ax=axes[0].tolist())
    cb.set_label("SQNR (dB), median over\nsampled steps and seeds", fontsize=9)
    out.append(png(fig))
    out.append("<p>SQNR of each expert's block of dW1 / dW2 against the fp64 golden layer run on the same input, "
               "weights and upstream gradient, at the sampled steps. Low cells are experts whose weight update is "
               "noisiest (rule <a href='#rule-wgrad_sqnr_expert'>wgrad_sqnr_expert</a>).</p>")
    out.append("<p class='prov'>" + runs_line(h for d in used.values() for h in d) + "</p>")
    return "".join(out)


ORIGIN_TEXT = {"direct": "direct", "dq_q": "DQ→Q (double quantization)", "sat": "scaling-aware transpose",
               "naive": "naive DQ→T→Q transpose", "fused": "fused SwiGLU quant"}


def section_moe(runs, a):
    moe = [r for r in runs if r["kind"] == "moe_dataflows"]
    out = ["<h2 id='moe'>MoE layer: error vs cast attribution</h2>"]
    if not moe:
        return out[0] + "<p class='na'>No moe_dataflows runs in this file.</p>"
    groups = defaultdict(list)
    for r in moe:
        groups[group_key(r)].append(r)
    for gk, rs in groups.items():
        per_df = {}  # df -> [(tensor, prec, sqnr, rel, uf/n)]
        casts = {}
        for r in rs:
            t = r["tables"]["metrics"]["columns"]
            tr = r["params"].get("transpose", "paper_kernel")
            for i, (d, tn, pr) in enumerate(zip(t["dataflow"], t["tensor"], t["prec"])):
                key = f"fp8_flow({tr})" if d == "fp8_flow" else d
                per_df.setdefault(key, []).append((tn, pr, t["sqnr_db"][i], t["rel_err"][i], r["hash"]))
            if "casts" in r["tables"]:
                c = r["tables"]["casts"]["columns"]
                for i, d in enumerate(c["dataflow"]):
                    key = f"fp8_flow({tr})" if d == "fp8_flow" else d
                    casts[key] = {k: v[i] for k, v in c.items() if k != "dataflow"}
        dfs = [d for d in sorted(per_df, key=df_sort_key) if d != "fp64"]
        if not dfs:
            continue
        fig, axes = plt.subplots(1, len(dfs), figsize=(3.6 * len(dfs), 8), squeeze=False, sharex=True, layout="constrained")
        for ax, d in zip(axes[0], dfs):
            rows = [x for x in per_df[d] if x[1] == "fp8" or x[0] in MOE_OUTPUTS or x[1] == "bf16" and not x[0].endswith(("w1", "w2", "wr"))]
            names = [x[0] for x in rows]
            sq = [np.nan if x[2] is None else x[2] for x in rows]
            colors = ["#cf222e" if x[1] == "fp8" else "#0969da" if x[0] in MOE_OUTPUTS else "#8c959f" for x in rows]
            ax.barh(range(len(rows)), sq, color=colors)
            ax.set_yticks(range(len(rows)), names, fontsize=9)
            ax.invert_yaxis()
            ax.set_title(d, fontsize=10)
            ax.set_xlabel("SQNR vs fp64 (dB)")
        fig.suptitle("Each tensor in graph order (red: FP8 casts, blue: layer outputs/gradients, grey: other)", fontsize=11)
        out.append(png(fig))
        shape = json.loads(gk)
        shape_s = ", ".join(f"{k}={v}" for k, v in shape.items() if v not in (0, None, ""))  # 0: the preset's value
        out.append(f"<p>One MoE layer forward and backward ({esc(shape_s)}); each "
                   "bar is one tensor of the dataflow's graph against the fp64 golden layer, top to bottom in execution "
                   "order, so the step where a dataflow's SQNR falls is the cast or GEMM that costs the error.</p>")
        head = ["dataflow"] + MOE_OUTPUTS + ["explicit casts"]
        rows = []
        for d in dfs:
            by = {x[0]: x for x in per_df[d]}
            cells = [f"{fmt(by[o][2])} dB" if o in by else "–" for o in MOE_OUTPUTS]
            h = next(iter(by.values()))[4]
            rows.append(f"<tr><td>{esc(d)} {run_link(h)}</td>" + "".join(f"<td>{c}</td>" for c in cells)
                        + f"<td>{fmt(casts.get(d, {}).get('explicit_casts'))}</td></tr>")
        out.append("<table><tr>" + "".join(f"<th>{esc(x)}</th>" for x in head) + "</tr>" + "".join(rows) + "</table>")
        origins = a.get("copy_origins", {})
        orows = []
        for d in dfs:
            for o in origins.get(d, []):
                orows.append(f"<tr><td>{esc(d)}</td><td><code>{esc(o['tensor'])}</code></td><td><code>{esc(o['source'])}</code>"
                             f"</td><td>{esc(ORIGIN_TEXT.get(o['origin'], o['origin']))}</td></tr>")
        if orows:
            out.append("<p>How each FP8 tensor is made (from the graph; docs/dataflows.md \"Which copies are requantized\"): "
                       "<i>direct</i> from a high-precision tensor, <i>DQ→Q</i> from dequantized FP8 values (a double "
                       "quantization; fp8_blockwise's xp and dout copies are of this kind), SAT, or the fused SwiGLU "
                       "quant.</p><table class='small'><tr><th>dataflow</th><th>FP8 tensor</th><th>made from</th>"
                       "<th>how</th></tr>" + "".join(orows) + "</table>")
        out.append("<p class='prov'>" + runs_line(r["hash"] for r in rs) + "</p>")
    return "".join(out)


def section_transpose(runs):
    ts = [r for r in runs if r["kind"] == "transpose_study"]
    out = ["<h2 id='transpose'>Transpose study: naive / paper_kernel / exact / direct</h2>"]
    if not ts:
        return out[0] + "<p class='na'>No transpose_study runs in this file.</p>"
    labels, sq, uf, extra = [], defaultdict(list), defaultdict(list), defaultdict(list)
    rows = []
    for r in ts:
        t = r["tables"]["metrics"]["columns"]
        idx = {(m, ref): i for i, (m, ref) in enumerate(zip(t["method"], t["reference"]))}
        dist = r["params"].get("distribution", "?")
        shape = r["params"].get("shape", [])
        label = f"{dist} {'x'.join(map(str, shape))}"
        labels.append(label)
        d = idx.get(("direct", "input"))
        sd = t["sqnr_db"][d] if d is not None else None
        cells = []
        for m in TRANSPOSE_METHODS:
            i = idx.get((m, "input"))
            s = t["sqnr_db"][i] if i is not None else None
            sq[m].append(np.nan if s is None else s)
            n = t["n"][i] if i is not None else 0
            u = t["underflow_to_zero"][i] / n if i is not None and n else np.nan
            uf[m].append(u)
            ex = 100 * (10 ** ((sd - s) / 10) - 1) if s is not None and sd is not None else np.nan
            extra[m].append(ex)
            off = idx.get((m, "exact"))
            cells.append(f"{fmt(s)} dB<br><small>+{fmt(ex)} % noise, uf {fmt(u)}"
                         + (f", codes≠exact {fmt(t['frac_codes_off'][off])}" if off is not None else "") + "</small>")
        pve = r["tables"].get("paper_vs_exact", {}).get("attrs", {})
        rows.append(f"<tr><td>{esc(label)} {run_link(r['hash'])}</td>" + "".join(f"<td>{c}</td>" for c in cells)
                    + f"<td>{fmt(pve.get('elements_differing'))}</td></tr>")
    x = np.arange(len(labels))
    w = 0.2
    fig, axes = plt.subplots(1, 2, figsize=(15, 4.8), layout="constrained")
    for k, m in enumerate(TRANSPOSE_METHODS):
        axes[0].bar(x + (k - 1.5) * w, extra[m], w, label=m)
        axes[1].bar(x + (k - 1.5) * w, uf[m], w, label=m)
    axes[0].set(ylabel="noise power above direct (%)", title="Column copy: extra error vs direct 128x1 quantization")
    axes[1].set(ylabel="fraction of elements", title="Column copy: underflow to zero")
    for ax in axes:
        ax.set_xticks(x, labels, fontsize=9, rotation=15)
        ax.legend(fontsize=9)
    out.append(png(fig))
    out.append("<p>The column (128x1) copy of a 1x128-quantized tensor, four ways: <b>naive</b> DQ→transpose→Q "
               "(every copy of fp8_double_quant, and the xp/dout copies of fp8_blockwise, which requantize the "
               "dequantized FP8 dispatch output), the paper's scaling-aware transpose <b>paper_kernel</b> and "
               "<b>exact</b> SAT (fp8_flow), and <b>direct</b> quantization of the high-precision input (the act/dh "
               "copies of fp8_blockwise; every copy of fp8_blockwise_bf16_dispatch). SQNR vs the input; extra noise "
               "relative to direct; uf = fraction underflowing to zero. <b>Finding</b>: with power-of-two scales "
               "naive is nearly lossless (DQ→Q lands on the same grid) while the SAT's one scale per 128x128 tile "
               "costs more than the double quantization it avoids wherever a column's values are far below the "
               "tile's amax; with fp32 scales (te_fp32, deepgemm) naive rounds a second time (about 3 dB, twice the noise, on N(0,1); "
               "tests/test_quant_transpose.cpp), and SAT, which needs power-of-two scales, cannot be used.</p>")
    out.append("<table><tr><th>input</th>" + "".join(f"<th>{m}</th>" for m in TRANSPOSE_METHODS)
               + "<th>paper≠exact elements</th></tr>" + "".join(rows) + "</table>")
    out.append("<p class='prov'>" + runs_line(r["hash"] for r in ts) + "</p>")
    return "".join(out)


def section_provenance(payload):
    rows = []
    for r in sorted(payload["runs"], key=lambda r: (r["kind"], r["label"])):
        p = r["provenance"]
        rows.append(f"<tr id='run-{esc(r['hash'])}'><td><code>{esc(r['hash'])}</code></td><td>{esc(r['kind'])}</td>"
                    f"<td>{esc(r['label'])}<br><small>{esc(r['summary'])}</small></td><td>{esc(r['experiment'])}</td>"
                    f"<td>{esc(p['fp8flow_version'])}<br><small>{esc(p['git_commit'])}</small></td>"
                    f"<td><small>{esc(p['compiler'])} {esc(p['build_type'])}<br>{esc(p['host'])}, {p['threads']} threads"
                    f"</small></td><td><small>{esc(p['start_time'])}<br>{esc(p['end_time'])}</small></td>"
                    f"<td><small><code>{esc(json.dumps(r['params'], sort_keys=True))}</code></small></td></tr>")
    return ("<h2 id='provenance'>Provenance</h2>"
            f"<p>File <code>{esc(payload['file'])}</code>; report by fp8flow {esc(payload['fp8flow_version'])} "
            f"({esc(payload['git_commit'])}) at {esc(payload['generated'])}. Every run the report read, with the build "
            "that computed it (run attributes, docs/results-format.md).</p>"
            "<table class='small'><tr><th>run</th><th>kind</th><th>label / summary</th><th>experiment</th>"
            "<th>fp8flow / commit</th><th>build, host</th><th>start / end (UTC)</th><th>parameters</th></tr>"
            + "".join(rows) + "</table>")


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1400px;color:#1f2328;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:32px}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border:1px solid #d0d7de;padding:3px 7px;vertical-align:top}
th{background:#f6f8fa}table.small{font-size:11px}.badge{color:#fff;border-radius:4px;padding:1px 6px;font-size:12px;font-weight:600}
.ev{margin:6px 0 10px 12px;font-size:13px}.reason{color:#57606a;font-size:13px}.na{color:#6e7781}.prov{font-size:11px;color:#57606a}
img{max-width:100%}code{font-size:11px}nav a{margin-right:12px}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    with open(args.data) as f:
        payload = json.load(f)
    a = payload["assessment"]
    runs = payload["runs"]
    body = [f"<h1>fp8flow convergence-risk report</h1><p><code>{esc(payload['file'])}</code>: {len(runs)} runs; "
            f"generated {esc(payload['generated'])} by fp8flow {esc(payload['fp8flow_version'])} ({esc(payload['git_commit'])})</p>",
            "<nav><a href='#verdicts'>verdicts</a><a href='#risks'>risk table</a><a href='#training'>loss</a>"
            "<a href='#experts'>experts</a><a href='#moe'>MoE casts</a><a href='#transpose'>transpose study</a>"
            "<a href='#evidence'>evidence</a><a href='#provenance'>provenance</a></nav>",
            section_verdicts(a), section_risk_table(a), section_training(runs, a), section_heatmaps(runs),
            section_moe(runs, a), section_transpose(runs), section_evidence(a), section_provenance(payload)]
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>fp8flow report</title>"
            f"<style>{CSS}</style></head><body>" + "".join(body) + "</body></html>")
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(page)


if __name__ == "__main__":
    main()
