#!/usr/bin/env bash
# Run the numbered notebooks end to end with papermill, or the tests.
#
#   ./run_all.sh                       set up .venv on first use, run every notebook (quick)
#   ./run_all.sh --profile cpu         full data, budgets for 2 CPU cores (full: GPU budgets)
#   ./run_all.sh --only 01             run one notebook (repeatable: --only 01 --only 02)
#   ./run_all.sh --data PATH --seed 1  data file/folder (else $FER2013_PATH, then data/); seed
#                                      (else each notebook's own: that of its committed runs)
#   ./run_all.sh --tests               set up .venv, then ruff and pytest (extra args go to pytest)
#
# Executed copies go to outputs/<profile>/; a cpu-profile copy that ran to the end also to
# notebooks/executed/ (committed: what GitHub shows). The editable notebooks stay unexecuted.
# Without data it runs the quick profile on the bundled sample (data/sample/) and says so.
set -euo pipefail
cd "$(dirname "$0")"

VENV="${FER_VENV:-.venv}"
profile="" data="${FER2013_PATH:-}" seed="" only=() tests=0 pytest_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --data) data="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --only) only+=("$2"); shift 2 ;;
    --tests) tests=1; shift; pytest_args=("$@"); break ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

# --- environment: a virtual environment with the pinned requirements, made once -------------
[[ "$VENV" = /* ]] || VENV="$PWD/$VENV"  # absolute: it goes on PATH below
python_for_venv() {
  for candidate in python3.11 python3; do
    command -v "$candidate" >/dev/null && { echo "$candidate"; return; }
  done
  return 1
}
stamp="$VENV/.requirements-$(cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  if [[ ! -x "$VENV/bin/python" ]]; then
    # (an exit inside $(...) would only leave the subshell: test the result here instead)
    python=$(python_for_venv) || {
      echo "run_all.sh: Python 3.11 is needed (python3.11 or python3 on PATH)" >&2; exit 1
    }
    "$python" -m venv "$VENV"
  fi
  echo "== installing requirements into $VENV (first run only) =="
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -r requirements.txt
  "$VENV/bin/python" -m pip install --quiet --no-deps -e .
  rm -f "$VENV"/.requirements-* && touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"

if [[ $tests -eq 1 ]]; then
  ruff check .
  ruff format --check .
  exec python -m pytest "${pytest_args[@]}"
fi

# --- data: argument, $FER2013_PATH, data/ — else the bundled sample ------------------------
if [[ -z "$data" ]] && ! python -c "from fer_utils.data import find_data; find_data()" 2>/dev/null; then
  data="data/sample/fer2013_sample.csv.gz"
  [[ -n "$profile" && "$profile" != quick ]] && echo "note: --profile $profile needs the real data; using quick"
  profile=quick
  cat <<EOF
==========================================================================================
  No FER2013 data found (no --data, no \$FER2013_PATH, nothing in data/).
  Running the QUICK profile on the bundled SAMPLE ($data): a smoke run, its
  numbers mean nothing. Get the real data with \`python -m fer_utils download\` (Kaggle
  credentials needed) or pass --data PATH.
==========================================================================================
EOF
fi
profile="${profile:-quick}"
# The notebooks find the data through $FER2013_PATH (their data_path stays None), so that an
# executed copy holds no path of the machine that ran it.
[[ -n "$data" ]] && export FER2013_PATH="$(realpath "$data")"

# --- notebooks ------------------------------------------------------------------------------
# The kernels draw inline, so that the executed copies show their figures: a backend set in
# the environment (MPLBACKEND=Agg, as on a headless machine) would leave them without any.
unset MPLBACKEND
out="outputs/$profile"
mkdir -p "$out"
# Quick runs are smoke runs: their figures, results, models and checkpoints go to .../quick/
# folders (ignored by git), never over those of a real run.
if [[ "$profile" == quick ]]; then
  export FER_FIGURES="${FER_FIGURES:-$PWD/figures/quick}" FER_RESULTS="${FER_RESULTS:-$PWD/results/quick}"
  export FER_MODELS="${FER_MODELS:-$PWD/models/quick}" FER_CHECKPOINTS="${FER_CHECKPOINTS:-$PWD/checkpoints/quick}"
  export FER_MODEL="${FER_MODEL:-$PWD/models/default.keras}"  # 06/07 explain the shipped model
fi
ran=0 timings=()
for notebook in notebooks/[0-9][0-9]_*.ipynb; do
  name="$(basename "$notebook")"
  if [[ ${#only[@]} -gt 0 ]]; then
    wanted=0
    for n in "${only[@]}"; do [[ "$name" == "$n"_* || "$name" == "$n" ]] && wanted=1; done
    [[ $wanted -eq 1 ]] || continue
  fi
  echo "== $name (profile $profile, seed ${seed:-of the notebook}) =="
  params=(-p profile "$profile")
  [[ -n "$seed" ]] && params+=(-p seed "$seed")
  started=$SECONDS
  if ! papermill "$notebook" "$out/$name" "${params[@]}" --cwd notebooks -k python3 --progress-bar; then
    echo "FAILED: $name — the executed copy with the error is $out/$name" >&2
    exit 1
  fi
  if [[ "$profile" == cpu ]]; then  # only a finished run replaces the committed copy
    mkdir -p notebooks/executed && cp "$out/$name" "notebooks/executed/$name"
  fi
  took=$((SECONDS - started))
  timings+=("$(printf '%4d min %02d s  %s' $((took / 60)) $((took % 60)) "$name")")
  ran=$((ran + 1))
done
[[ $ran -gt 0 ]] || { echo "run_all.sh: no notebook matches --only ${only[*]}" >&2; exit 2; }
printf '%s\n' "== time per notebook (profile $profile) ==" "${timings[@]}"
echo "== done: $ran notebook(s) in $(( SECONDS / 60 )) min; executed copies in $out/, figures in ${FER_FIGURES:-figures}/ =="
