#!/usr/bin/env python3
"""End-to-end tests of `fp8flow run / check / ls / show / export` and the HDF5 results store, read with h5py.

Usage: test_run.py FP8FLOW_BINARY SOURCE_DIR GROUP
Groups: end_to_end, errors, resume, lock, kill9, mpi, notebook. Exit 77 = skipped (reason printed).
"""
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

BIN = os.path.abspath(sys.argv[1])
SRC = os.path.abspath(sys.argv[2])
GROUP = sys.argv[3]
TMP = tempfile.mkdtemp(prefix=f"fp8flow-run-{GROUP}-")
SKIP = 77
PROVENANCE_VARIES = {"start_time", "end_time", "host", "threads"}

SMALL = """
[experiment]
name = "e2e"
[[study]]
name = "sat"
kind = "transpose_study"
params = { shape = [256, 384] }
sweep = { distribution = ["normal", "outliers", "activations"], seed = [1, 2] }
[[study]]
name = "gemm"
kind = "gemm_accum_study"
params = { save_tensors = true }
[study.sweep.zip]
shape = [[16, 32, 512], [16, 32, 1024]]
"""

MANY = """
[experiment]
name = "many"
kind = "transpose_study"
[params]
shape = [256, 256]
[sweep]
distribution = ["normal", "outliers", "activations"]
seed = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
"""


def path(name):
    return os.path.join(TMP, name)


def write(name, text):
    with open(path(name), "w") as f:
        f.write(text)
    return path(name)


def run(*args, rc=0, cmd=None, timeout=600):
    argv = (cmd or [BIN]) + [str(a) for a in args]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if rc is not None and p.returncode != rc:
        raise AssertionError(f"{' '.join(argv)}: exit {p.returncode}, expected {rc}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def sha256(p):
    with open(p, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def value(x):
    if isinstance(x, np.ndarray):
        if x.dtype.kind == "O":  # variable-length strings: compare the text, not the pointers
            return ("strings", x.shape, [v.decode() if isinstance(v, bytes) else str(v) for v in x.ravel()])
        return ("array", str(x.dtype), x.shape, x.tobytes())
    if isinstance(x, bytes):
        return x.decode()
    if isinstance(x, (np.generic,)):
        return x.item() if not isinstance(x, np.floating) else x.tobytes()
    return x


def run_content(g):
    """Everything in a run group except the provenance that legitimately varies (times, host, threads)."""
    out = {}

    def visit(name, obj):
        key = name
        attrs = {k: value(v) for k, v in obj.attrs.items() if not (obj == g and k in PROVENANCE_VARIES)}
        if isinstance(obj, h5py.Dataset):
            data = obj[()]
            if obj.dtype.kind == "O":
                data = [value(v) for v in np.asarray(data).ravel()]
            else:
                data = value(np.asarray(data))
            out[key] = (attrs, data)
        else:
            out[key] = (attrs, None)

    visit("", g)
    g.visititems(visit)
    return out


def file_content(p):
    with h5py.File(p, "r") as f:
        check(f.attrs["fp8flow_schema_version"] == 1, "schema version attribute")
        check("staging" not in f, f"{p}: a published file has /staging")
        return {h: run_content(f["runs"][h]) for h in f["runs"]}


def compare_files(a, b, what):
    ca, cb = file_content(a), file_content(b)
    check(sorted(ca) == sorted(cb), f"{what}: different runs: {sorted(set(ca) ^ set(cb))}")
    for h in ca:
        if ca[h] != cb[h]:
            diff = [k for k in set(ca[h]) | set(cb[h]) if ca[h].get(k) != cb[h].get(k)]
            raise AssertionError(f"{what}: run {h} differs in {sorted(diff)[:5]}")


# ---- groups ------------------------------------------------------------------------------------------

def test_end_to_end():
    exp = write("small.toml", SMALL)
    out = run("check", exp)
    check("8 runs" in out.stdout and "transpose_study 6" in out.stdout, out.stdout)
    listed = run("check", exp, "--list").stdout.strip().splitlines()
    check(len(listed) == 9, listed)
    r1, r2 = path("t1.h5"), path("t2.h5")
    t0 = time.time()
    out = run("run", exp, "-o", r1, "--threads", "1")
    check("8 runs written" in out.stdout, out.stdout)
    check("\r" not in out.stdout, "no progress bar when stdout is not a terminal")
    print(f"small experiment: {time.time() - t0:.1f} s with 1 thread")
    run("run", exp, "-o", r2, "--threads", "2", "--quiet")
    compare_files(r1, r2, "--threads 1 vs --threads 2")

    with h5py.File(r1, "r") as f:
        runs = f["runs"]
        check(len(runs) == 8, list(runs))
        for h in runs:
            g = runs[h]
            for a in ["kind", "hash", "label", "summary", "params_json", "fp8flow_version", "git_commit", "compiler",
                      "build_type", "cxx_flags", "host", "start_time", "end_time", "threads", "seed"]:
                check(a in g.attrs, f"run {h}: attribute {a}")
            check(g.attrs["hash"] == h, "hash attribute")
            check(g.attrs["start_time"].endswith("Z") and "T" in g.attrs["start_time"], g.attrs["start_time"])
            params = json.loads(g.attrs["params_json"])
            for k, v in params.items():
                a = g.attrs[k]
                if isinstance(v, list) and v and isinstance(v[0], str):
                    check([str(x) for x in a] == v, f"{k}: {a} vs {v}")
                elif isinstance(v, list):
                    check(list(np.asarray(a).tolist()) == v, f"{k}: {a} vs {v}")
                else:
                    check(a == v, f"{k}: {a!r} vs {v!r}")
            m = g["tables/metrics"]
            cols = [c for c in m.attrs["columns"]]
            check("sqnr_db" in cols and m["sqnr_db"].attrs["units"] == "dB", "metrics columns and units")
            check(all(len(m[c]) == len(m[cols[0]]) for c in cols), "columns of equal length")
            if g.attrs["kind"] == "gemm_accum_study":
                t = g["tensors/a_codes"]
                check(t.chunks is not None and t.compression == "gzip", "tensors chunked + deflate")
                check(t.shape == (16, int(json.loads(g.attrs["params_json"])["shape"][2])), t.shape)
            else:
                check("tensors" not in g, "no tensors without save_tensors")
                check(len(m["method"]) == 13, "13 comparisons")

    before = sha256(r1)
    ls = run("ls", r1).stdout.splitlines()
    check(len(ls) == 10 and "8 runs" in ls[-1], ls)
    first = ls[1].split()[0]
    show = run("show", r1, first[:6]).stdout
    check(first in show and "params:" in show and "metrics" in show, show[:500])
    j = json.loads(run("show", r1, first, "--json").stdout)
    check(j["hash"] == first and "metrics" in j["tables"] and "units" in j["tables"]["metrics"], list(j))
    run("export", r1, "--csv", path("csv"))
    files = sorted(os.listdir(path("csv")))
    check("runs.csv" in files and "metrics.csv" in files and "paper_vs_exact.csv" in files, files)
    with open(path("csv/runs.csv")) as f:
        check(len(f.read().strip().splitlines()) == 9, "runs.csv rows")
    with open(path("csv/metrics.csv")) as f:
        check(len(f.read().strip().splitlines()) == 1 + 6 * 13 + 2 * 4, "metrics.csv rows")
    check(sha256(r1) == before, "ls/show/export modified the results file")


def test_errors():
    bad = write("bad.toml", '[experiment]\nname = "x"\nkind = "transpose_study"\n[params]\nshape = [1024]\n')
    p = run("check", bad, rc=1)
    check(f"{bad}:5:9:" in p.stderr and "expected [rows, cols]" in p.stderr, p.stderr)
    p = run("run", bad, "-o", path("never.h5"), rc=1)
    check(not os.path.exists(path("never.h5")), "a bad experiment creates no results file")
    moe = write("moe.toml", '[experiment]\nname = "m"\nkind = "moe_dataflows"\n[params]\npreset = "tiny"\n'
                'dataflow = "fp9"\n')
    p = run("check", moe, rc=1)
    check(f"{moe}:6:12:" in p.stderr and "fp8_flow" in p.stderr, p.stderr)

    text = write("text.h5", "not an hdf5 file\n")
    foreign = path("foreign.h5")
    with h5py.File(foreign, "w") as f:
        f["data"] = np.arange(3)
    v2 = path("v2.h5")
    with h5py.File(v2, "w") as f:
        f.attrs["fp8flow_schema_version"] = np.int64(2)
        f.create_group("runs")
    for p_, msg in [(text, "not an HDF5 file"), (foreign, "not an fp8flow results store"), (v2, "schema version 2")]:
        before = sha256(p_)
        for args in (["ls", p_], ["show", p_, "ab"], ["export", p_, "--csv", path("x")]):
            r = run(*args, rc=1)
            check(msg in r.stderr, f"{args}: {r.stderr}")
        r = run("run", write("one.toml", '[experiment]\nname="o"\nkind="gemm_accum_study"\n[params]\nshape=[4,4,128]\n'),
                "-o", p_, rc=1)
        check(msg in r.stderr, r.stderr)
        check(sha256(p_) == before, f"{p_} was modified")
    run("ls", path("missing.h5"), rc=1)

    # A run with a missing dataset: named in the error; the file is untouched.
    exp = write("one.toml", '[experiment]\nname="o"\nkind="gemm_accum_study"\n[params]\nshape=[4,4,128]\n')
    r = path("damaged.h5")
    run("run", exp, "-o", r, "--quiet")
    with h5py.File(r, "a") as f:
        h = list(f["runs"])[0]
        del f[f"runs/{h}/tables/metrics/rmse"]
    before = sha256(r)
    p = run("show", r, h, rc=1)
    check("missing dataset 'rmse'" in p.stderr and h in p.stderr and "damaged" in p.stderr, p.stderr)
    p = run("export", r, "--csv", path("damaged-csv"), rc=0)  # the rest is exported; the damaged run is named
    check("damaged" in p.stderr and h in p.stderr and "0 runs" in p.stdout, p.stderr + p.stdout)
    check(sha256(r) == before, "show modified a damaged file")

    # Append-only: the same runs again without --resume is an error naming --resume.
    ok = path("ok.h5")
    run("run", exp, "-o", ok, "--quiet")
    before = sha256(ok)
    p = run("run", exp, "-o", ok, rc=1)
    check("--resume" in p.stderr and "already holds 1 of the 1 runs" in p.stderr, p.stderr)
    check(sha256(ok) == before, "a refused run modified the file")


def test_resume():
    exp = write("small.toml", SMALL)
    half = write("half.toml", SMALL.replace("seed = [1, 2]", "seed = [1]"))
    ref, r = path("ref.h5"), path("resumed.h5")
    run("run", exp, "-o", ref, "--quiet")
    run("run", half, "-o", r, "--quiet")
    before = file_content(r)
    p = run("run", exp, "-o", r, "--resume")
    check("5 already complete" in p.stdout and "3 runs written" in p.stdout, p.stdout)
    after = file_content(r)
    for h, c in before.items():
        check(after[h] == c, f"--resume changed earlier run {h}")
    compare_files(ref, r, "resumed vs uninterrupted")
    p = run("run", exp, "-o", r, "--resume")
    check("0 runs written, 8 already complete" in p.stdout, p.stdout)


def test_lock():
    exp = write("many.toml", MANY)
    r = path("locked.h5")
    a = subprocess.Popen([BIN, "run", exp, "-o", r, "--quiet", "--threads", "1"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        lock = r + ".lock"
        for _ in range(400):
            if os.path.exists(lock) and open(lock).read().startswith(str(a.pid)):
                break
            time.sleep(0.01)
        check(a.poll() is None, "the first writer finished before the test could race it")
        p = run("run", exp, "-o", r, "--resume", rc=1)
        check(f"pid {a.pid}" in p.stderr and "another fp8flow is writing" in p.stderr and r in p.stderr, p.stderr)
    finally:
        a.kill()
        a.wait()
    # The kernel released the lock of the killed writer: a new one runs.
    run("run", exp, "-o", r, "--resume", "--quiet")


def test_kill9():
    # save_tensors makes each commit copy a growing file and deflate tensors, so commits take a while.
    exp = write("many.toml", MANY.replace("shape = [256, 256]", "shape = [256, 256]\nsave_tensors = true"))
    ref = path("ref.h5")
    t0 = time.time()
    run("run", exp, "-o", ref, "--quiet", "--commit-interval", "0")
    full = time.time() - t0
    print(f"uninterrupted run: {full:.2f} s, 30 runs")
    ref_content = file_content(ref)
    r = path("killed.h5")
    rng = random.Random(20250301)
    seen = {}  # hash -> content of every run published so far
    kills = in_commit = 0

    def partials(pid=""):
        return [f for f in os.listdir(TMP) if f.startswith(f"killed.h5.partial-{pid}")]

    # Half the kills at a random moment of the run; half aimed at a commit: as soon as the partial copy
    # appears (the commit has started), wait a random 0..20 ms, then SIGKILL.
    for attempt in range(16):
        aim_commit = attempt % 2 == 1
        delay = rng.uniform(0.02, max(0.1, full * 0.3))
        a = subprocess.Popen([BIN, "run", exp, "-o", r, "--resume", "--quiet", "--commit-interval", "0", "--threads", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        t_start = time.time()
        if aim_commit:
            while a.poll() is None and not partials(a.pid) and time.time() - t_start < full:
                pass
            delay = rng.uniform(0.0, 0.02)
        time.sleep(delay)
        if a.poll() is not None:
            check(a.returncode == 0, f"run exited {a.returncode}: {a.stderr.read()}")
            print(f"attempt {attempt}: finished before the kill")
            break
        a.send_signal(signal.SIGKILL)
        a.wait()
        kills += 1
        when = f"{time.time() - t_start:.3f} s{' (aimed at a commit)' if aim_commit else ''}"
        if not os.path.exists(r):
            print(f"kill {kills} at {when}: before the first commit")
            continue
        content = file_content(r)  # h5py opens it: the file is valid
        for h, c in seen.items():
            check(content.get(h) == c, f"kill at {when}: earlier run {h} changed or vanished")
        for h, c in content.items():
            check(c == ref_content[h], f"kill at {when}: run {h} is incomplete or differs from the reference")
        seen = content
        left = partials(a.pid)
        in_commit += bool(left)
        print(f"kill {kills} at {when}: {len(content)} runs readable, {'inside a commit' if left else 'between commits'}")
    check(kills >= 6, f"only {kills} kills landed")
    check(in_commit >= 2, f"only {in_commit} kills landed inside a commit")
    print(f"{kills} kills, {in_commit} inside a commit")
    run("run", exp, "-o", r, "--resume", "--quiet")
    compare_files(ref, r, "killed + resumed vs uninterrupted")
    check(not partials(), "stale partial files left after the resumed run")


def test_mpi():
    mpirun = shutil.which("mpirun")
    if not mpirun:
        print("SKIP: mpirun not found (install openmpi-bin)")
        sys.exit(SKIP)
    exp = write("small.toml", SMALL)
    single, multi = path("single.h5"), path("mpi.h5")
    run("run", exp, "-o", single, "--quiet")
    cmd = [mpirun, "--allow-run-as-root", "--oversubscribe", "-n", "2", BIN]
    p = run("run", exp, "-o", multi, "--threads", "1", cmd=cmd)
    if "2 ranks" not in p.stdout:
        print(f"SKIP: fp8flow was built without MPI (stdout: {p.stdout.strip()})")
        sys.exit(SKIP)
    compare_files(single, multi, "mpirun -n 2 vs single process")
    with h5py.File(multi, "r") as f:
        check(len(f["runs"]) == 8, "8 runs")
    # Resume under MPI, and an error on rank 0 (existing runs without --resume) ends all ranks cleanly.
    p = run("run", exp, "-o", multi, "--resume", cmd=cmd)
    check("0 runs written, 8 already complete" in p.stdout, p.stdout)
    p = run("run", exp, "-o", multi, cmd=cmd, rc=None)
    check(p.returncode != 0 and "--resume" in p.stderr, p.stderr)
    # Without mpirun the MPI-linked binary is a plain single process.
    p = run("run", exp, "-o", path("plain.h5"))
    check("1 rank" in p.stdout, p.stdout)


def test_notebook():
    try:
        import nbclient  # noqa: F401
        import nbformat
    except ImportError as e:
        print(f"SKIP: {e} (the notebook test needs nbclient and nbformat in the venv)")
        sys.exit(SKIP)
    from nbclient import NotebookClient
    exp = write("small.toml", SMALL)
    r = path("nb.h5")
    run("run", exp, "-o", r, "--quiet")
    before = sha256(r)
    nb = nbformat.read(os.path.join(SRC, "notebooks", "read_results.ipynb"), as_version=4)
    os.environ["FP8FLOW_RESULTS"] = r
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": TMP}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    check("8 runs" in outputs, outputs[:2000])
    check(sha256(r) == before, "the notebook modified the results file")


def test_study_out():
    """`fp8flow transpose-study --out F` logs the run `fp8flow run` would write for the same parameters."""
    f = path("study.h5")
    p = run("transpose-study", "--dist", "outliers", "--shape", "256,384", "--seed", "2", "--groups", "100,156",
            "--eps", "1e-10", "--out", f)
    line = [l for l in p.stdout.splitlines() if l.startswith("report: written to")]
    check(len(line) == 1, f"no 'report: written to' line:\n{p.stdout}")
    h = line[0].split()[-1]
    exp = write("same.toml", '[experiment]\nname = "same"\nkind = "transpose_study"\n[params]\n'
                'distribution = "outliers"\nshape = [256, 384]\nseed = 2\ngroups = [100, 156]\neps = 1e-10\n')
    run("run", exp, "-o", path("same.h5"), "--quiet")
    with h5py.File(f, "r") as a, h5py.File(path("same.h5"), "r") as b:
        check(list(a["runs"].keys()) == [h], f"study.h5 runs {list(a['runs'].keys())}, expected [{h}]")
        check(list(b["runs"].keys()) == [h], f"fp8flow run gave {list(b['runs'].keys())}, the CLI {h}")
        for t in a[f"runs/{h}/tables"]:
            ta, tb = a[f"runs/{h}/tables/{t}"], b[f"runs/{h}/tables/{t}"]
            for col in ta:
                va, vb = np.asarray(ta[col][()]), np.asarray(tb[col][()])
                same = np.array_equal(va, vb, equal_nan=va.dtype.kind == "f")
                check(same, f"table {t} column {col} differs between the CLI and fp8flow run")
    before = sha256(f)
    p = run("transpose-study", "--dist", "outliers", "--shape", "256,384", "--seed", "2", "--groups", "100,156",
            "--eps", "1e-10", "--out", f, "--json")
    check("already holds" in json.loads(p.stdout)["report"], f"second write not detected: {p.stdout[-300:]}")
    check(sha256(f) == before, "a repeated study changed the store")
    np.save(path("x.npy"), np.ones((4, 128), dtype=np.float32))
    p = run("transpose-study", "--dist", "file:" + path("x.npy"), "--out", f, rc=2)
    check("--out" in p.stderr and f in p.stderr, f"unclear error: {p.stderr}")
    check(sha256(f) == before, "a refused study changed the store")


GROUPS = {n[5:]: f for n, f in globals().items() if n.startswith("test_")}

if __name__ == "__main__":
    if GROUP not in GROUPS:
        sys.exit(f"unknown group {GROUP}; groups: {', '.join(GROUPS)}")
    try:
        GROUPS[GROUP]()
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    print(f"run.{GROUP}: OK")
