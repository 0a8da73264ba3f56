#!/usr/bin/env bash
# `make peers-check`: run Airbyte's and Singer's Close connectors, unmodified, against the
# Close emulator and check that each reads every email activity it holds.
#
#   1. venvs under .peers/ (git-ignored): airbyte-source-close-com==0.5.30 and
#      tap-closeio==1.6.6 from PyPI (two venvs: their dependencies conflict);
#   2. .peers/shim/sitecustomize.py (from bench/peers/): redirects the peers' hard-coded
#      https://api.close.com / https://app.close.io URLs to the emulator (peers.md §4);
#   3. the emulator (rate limits and faults off) with PEERS_EMAILS emails over 30 days;
#   4. Airbyte `check` + `read` of email_activities; Singer discover + `activities` sync;
#   5. per peer: RECORD messages vs the emulator's emails, and the API requests it made.
#
# Prints one summary line per peer; exits non-zero if a peer fails (or cannot be installed).
# Environment: PEERS_PYTHON (python for the venvs, default python3), PEERS_EMAILS (1000),
# PEERS_TIMEOUT (seconds per connector run, 600), PEERS_INSTALL_ONLY=1 (steps 1-2 only, then
# exit: non-zero if a peer could not be installed).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="$ROOT/.peers"
WORK="$PEERS/run"
PY="$ROOT/.venv/bin/python"
PEERS_PYTHON="${PEERS_PYTHON:-python3}"
EMAILS="${PEERS_EMAILS:-1000}"
TIMEOUT="${PEERS_TIMEOUT:-600}"
AIRBYTE_PKG="airbyte-source-close-com==0.5.30"
SINGER_PKG="tap-closeio==1.6.6"
CHECK="$ROOT/bench/peers/check_output.py"

EMU_PID=""
cleanup() {
    if [[ -n "$EMU_PID" ]] && kill -0 "$EMU_PID" 2>/dev/null; then
        kill "$EMU_PID" 2>/dev/null
        wait "$EMU_PID" 2>/dev/null
    fi
}
trap cleanup EXIT

say() { printf '%s\n' "$*" >&2; }

# install_peer VENV "NAME==VERSION": create the venv and install the package unless it is
# already there at that version; returns non-zero (after printing pip's error) if it fails.
install_peer() {
    local venv="$1" spec="$2" name="${2%%==*}" version="${2##*==}"
    if [[ -x "$venv/bin/pip" ]] && installed_version "$venv" "$name" | grep -qx "$version"; then
        say "peers: $spec already installed in ${venv#"$ROOT"/}"
        return 0
    fi
    say "peers: installing $spec into ${venv#"$ROOT"/} (python: $("$PEERS_PYTHON" --version 2>&1))"
    rm -rf "$venv"
    if ! "$PEERS_PYTHON" -m venv "$venv" >"$venv.install.log" 2>&1; then
        say "peers: cannot create a venv with $PEERS_PYTHON:"
        tail -n 5 "$venv.install.log" >&2
        return 1
    fi
    if ! "$venv/bin/pip" install --disable-pip-version-check --quiet "$spec" \
        >>"$venv.install.log" 2>&1; then
        say "peers: pip install $spec failed; the last lines of ${venv#"$ROOT"/}.install.log:"
        grep -v '^WARNING: Location' "$venv.install.log" | tail -n 15 >&2
        return 1
    fi
    installed_version "$venv" "$name" | grep -qx "$version"
}

# installed_version VENV NAME: the version pip reports (read whole: `pip show | grep -q` can
# fail under pipefail when grep exits before pip has written everything)
installed_version() {
    local shown
    shown="$("$1/bin/pip" show "$2" 2>/dev/null)" || return 1
    sed -n 's/^Version: //p' <<<"$shown"
}

mkdir -p "$PEERS/shim" "$WORK"
rm -f "$WORK"/*.json "$WORK"/*.jsonl "$WORK"/*.err

AIRBYTE_OK=1
SINGER_OK=1
install_peer "$PEERS/airbyte-venv" "$AIRBYTE_PKG" || AIRBYTE_OK=0
install_peer "$PEERS/singer-venv" "$SINGER_PKG" || SINGER_OK=0
cp "$ROOT/bench/peers/sitecustomize.py" "$PEERS/shim/sitecustomize.py"
if [[ "${PEERS_INSTALL_ONLY:-0}" == 1 ]]; then  # `make bench` installs the peers this way
    ((AIRBYTE_OK && SINGER_OK))
    exit
fi

# --- the emulator --------------------------------------------------------------------------------
say "peers: starting the emulator ($EMAILS emails over 30 days, --rate 0, no faults)"
"$PY" -m close_emulator --port 0 --emails "$EMAILS" --seed 1 --rate 0 --history-days 30 \
    >"$WORK/emulator.out" 2>"$WORK/emulator.err" &
EMU_PID=$!
BASE=""
for _ in $(seq 1 600); do
    BASE="$(sed -n 's/^close_emulator listening on \([^ ]*\).*/\1/p' "$WORK/emulator.out")"
    [[ -n "$BASE" ]] && break
    if ! kill -0 "$EMU_PID" 2>/dev/null; then break; fi
    sleep 0.1
done
if [[ -z "$BASE" ]]; then
    say "peers: the emulator did not start:"
    cat "$WORK/emulator.err" >&2
    exit 2
fi
ADMIN="${BASE%/api/v1}/_emulator"
curl -sf "$ADMIN/emails?_fields=id,date_created" -o "$WORK/emails.json" || {
    say "peers: cannot read the emulator's emails"
    exit 2
}
curl -sf -X DELETE "$ADMIN/requests" >/dev/null
say "peers: emulator at $BASE"

export PYTHONPATH="$PEERS/shim" CLOSE_BASE_URL="$BASE/"
unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY all_proxy
START_DAY="$(date -u -d '60 days ago' +%Y-%m-%d)"
STATUS=0
SUMMARY=()

# --- Airbyte 0.5.30 ------------------------------------------------------------------------------
if ((AIRBYTE_OK)); then
    AB="$PEERS/airbyte-venv/bin/source-close-com"
    printf '{"api_key": "peers_check_key", "start_date": "%s"}\n' "$START_DAY" \
        >"$WORK/airbyte_config.json"
    cat >"$WORK/airbyte_catalog.json" <<'EOF'
{"streams": [{"stream": {"name": "email_activities", "json_schema": {"type": "object"},
  "supported_sync_modes": ["full_refresh", "incremental"], "source_defined_cursor": true,
  "default_cursor_field": ["date_created"]}, "sync_mode": "incremental",
  "cursor_field": ["date_created"], "destination_sync_mode": "append_dedup",
  "primary_key": [["id"]]}]}
EOF
    say "peers: airbyte check + read email_activities"
    timeout "$TIMEOUT" "$AB" check --config "$WORK/airbyte_config.json" \
        >"$WORK/airbyte_check.jsonl" 2>"$WORK/airbyte_check.err"
    timeout "$TIMEOUT" "$AB" read --config "$WORK/airbyte_config.json" \
        --catalog "$WORK/airbyte_catalog.json" \
        >"$WORK/airbyte_read.jsonl" 2>"$WORK/airbyte_read.err"
    RC=$?
    LINE="$("$PY" "$CHECK" --label "$AIRBYTE_PKG" --kind airbyte --stream email_activities \
        --output "$WORK/airbyte_read.jsonl" --check "$WORK/airbyte_check.jsonl" \
        --expected "$WORK/emails.json" --admin "$ADMIN")" || STATUS=1
    if ((RC != 0)); then
        LINE="FAIL $AIRBYTE_PKG: read exited with $RC (see .peers/run/airbyte_read.err)"$'\n'"$LINE"
        STATUS=1
    fi
    SUMMARY+=("$LINE")
else
    SUMMARY+=("FAIL $AIRBYTE_PKG: could not be installed here (see .peers/airbyte-venv.install.log)")
    STATUS=1
fi

# --- Singer tap-closeio 1.6.6 --------------------------------------------------------------------
if ((SINGER_OK)); then
    TAP="$PEERS/singer-venv/bin/tap-closeio"
    printf '{"api_key": "peers_check_key", "start_date": "%sT00:00:00Z", "date_window": 15, "activities_window_seconds": 86400}\n' \
        "$START_DAY" >"$WORK/singer_config.json"
    say "peers: singer discover + activities sync"
    timeout "$TIMEOUT" "$TAP" --config "$WORK/singer_config.json" --discover \
        >"$WORK/singer_catalog_all.json" 2>"$WORK/singer_discover.err"
    RC=$?
    if ((RC == 0)); then
        "$PY" - "$WORK/singer_catalog_all.json" "$WORK/singer_catalog.json" <<'EOF'
import json, sys
catalog = json.load(open(sys.argv[1]))
catalog["streams"] = [s for s in catalog["streams"] if s["tap_stream_id"] == "activities"]
for entry in catalog["streams"][0]["metadata"]:
    if entry["breadcrumb"] == []:
        entry["metadata"]["selected"] = True
json.dump(catalog, open(sys.argv[2], "w"))
EOF
        timeout "$TIMEOUT" "$TAP" --config "$WORK/singer_config.json" \
            --catalog "$WORK/singer_catalog.json" \
            >"$WORK/singer_sync.jsonl" 2>"$WORK/singer_sync.err"
        RC=$?
    else
        : >"$WORK/singer_sync.jsonl"
        echo '{"streams": []}' >"$WORK/singer_catalog_all.json"
    fi
    LINE="$("$PY" "$CHECK" --label "$SINGER_PKG" --kind singer --stream activities \
        --output "$WORK/singer_sync.jsonl" --discover "$WORK/singer_catalog_all.json" \
        --expected "$WORK/emails.json" --admin "$ADMIN" \
        --window-start "${START_DAY}T00:00:00Z" --window-lookback-seconds 86400 \
        --window-days 15)" || STATUS=1
    if ((RC != 0)); then
        LINE="FAIL $SINGER_PKG: the tap exited with $RC (see .peers/run/singer_*.err)"$'\n'"$LINE"
        STATUS=1
    fi
    SUMMARY+=("$LINE")
else
    SUMMARY+=("FAIL $SINGER_PKG: could not be installed here (see .peers/singer-venv.install.log)")
    STATUS=1
fi

echo
echo "peers-check against the Close emulator ($EMAILS emails, $BASE):"
for line in "${SUMMARY[@]}"; do
    echo "$line"
done
exit "$STATUS"
