#!/usr/bin/env bash
# Schemathesis against a live gateway on SQLite: every operation of /api/v1/openapi.json is
# called with generated valid and invalid requests, and the run fails on any 5xx, on any
# answer whose status, content type or body the document does not describe, and on an
# operation that answers without its key. It runs as practice A81001 (the documents'
# example practice) and then checks that practice B82002, which it must never reach, was
# neither shown nor changed. Called by .ci/run; runs alone too (`bash .ci/schemathesis.sh`).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
# Generated cases per operation and phase: the whole step stays within ~3 minutes on 2 cores.
EXAMPLES="${SCHEMATHESIS_EXAMPLES:-15}"

# Schemathesis from PyPI, pinned, in a virtual environment of its own (gitignored).
if ! .ci/venv/bin/schemathesis --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    python3 -m venv .ci/venv
    .ci/venv/bin/pip install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build --quiet --bin gateway
gateway="$PWD/target/debug/gateway"

work="$(mktemp -d)"
server=""
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
export GATEWAY__DATABASE__URL="sqlite://$work/gateway.db?mode=rwc"
export GATEWAY__SERVER__BIND="127.0.0.1:$port"
export GATEWAY__RECEIPTS__PUBLIC_URL="$base"
export GATEWAY__TELEMETRY__LOG_FILTER="warn"
# Callbacks configured, so that their signature checks (not their absence) answer.
export TWILIO_AUTH_TOKEN=schemathesis-twilio NOTIFY_CALLBACK_TOKEN=schemathesis-notify
export GATEWAY_WEBHOOK_SECRET=schemathesis-webhook GATEWAY_UNSUBSCRIBE_SECRET=schemathesis-links

cd "$work"   # the log providers write under ./data
"$gateway" migrate >/dev/null
admin="$("$gateway" keys create --admin --label "schemathesis admin" 2>/dev/null)"
"$gateway" serve >"$work/gateway.log" 2>&1 &
server=$!
for _ in $(seq 1 50); do
    curl -fsS "$base/readyz" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -fsS "$base/readyz" >/dev/null

api() { # METHOD PATH [BODY]: as the admin; fails on an error status
    curl -fsS -X "$1" -H "Authorization: Bearer $admin" -H "Content-Type: application/json" \
        ${3:+--data "$3"} "$base/api/v1$2"
}
api POST /practices '{"ods_code":"A81001","name":"Riverside Surgery"}' >/dev/null
api POST /practices/A81001/patients \
    '{"patients":[{"nhs_number":"9434765919","contacts":[{"channel":"sms","address":"07700 900123"}]}]}' >/dev/null
api POST /practices '{"ods_code":"B82002","name":"Hillside Surgery","sms_sender":"HILLSIDE"}' >/dev/null
api POST /practices/B82002/patients \
    '{"patients":[{"nhs_number":"9434765870","given_name":"Bea","contacts":[{"channel":"sms","address":"07700 900871"},{"channel":"email","address":"bea@hillside.example"}]}]}' >/dev/null
api POST /practices/B82002/staff '{"name":"Dr Hill","phone":"07700 900872","role":"approve"}' >/dev/null
key="$("$gateway" keys create --practice A81001 --label schemathesis 2>/dev/null)"

# What practice B looks like to an admin, before and after the run.
snapshot() {
    for path in /practices/B82002 /practices/B82002/patients/9434765870 /practices/B82002/staff \
        /practices/B82002/approval /practices/B82002/scheduled-notices /practices/B82002/proposals; do
        echo "$path"; api GET "$path"; echo
    done
}
snapshot >"$work/before.txt"

echo "schemathesis $SCHEMATHESIS_VERSION: $EXAMPLES examples per operation, as practice A81001"
started=$SECONDS
status=0
"$OLDPWD/.ci/venv/bin/schemathesis" run "$base/api/v1/openapi.json" \
    --header "Authorization: Bearer $key" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,ignored_auth \
    --phases examples,coverage,fuzzing \
    --max-examples "$EXAMPLES" \
    --workers 2 \
    --seed 16 \
    --request-timeout 10 \
    --report har --report-har-path "$work/answers.har" \
    --warnings off || status=$?
echo "schemathesis took $((SECONDS - started)) s"

snapshot >"$work/after.txt"
if ! diff -u "$work/before.txt" "$work/after.txt"; then
    echo "FAILED: the run changed practice B82002, which its key must never reach"
    status=1
fi
# Nothing of practice B may have been shown: its code, its patient's number and contacts.
# The record holds every request and answer (practice A's own name must be in it).
if ! grep -q 'Riverside Surgery' "$work/answers.har"; then
    echo "FAILED: the record of the run holds no answers to search"
    status=1
fi
if grep -E -o 'B82002|9434765870|07700 ?900871|\+447700900871|bea@hillside\.example|HILLSIDE' \
    "$work/answers.har" | sort | uniq -c | grep .; then
    echo "FAILED: answers to practice A81001's key showed practice B82002's data (above)"
    status=1
fi
if [ "$status" -ne 0 ]; then
    echo "--- gateway log (last 40 lines)"
    tail -n 40 "$work/gateway.log"
fi
exit "$status"
