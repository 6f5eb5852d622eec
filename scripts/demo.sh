#!/usr/bin/env bash
# porthole's main job on a built-in default: build the agent and the CLI, start the agent on a
# local socket (as it would run inside a guest), and drive it with the host CLI.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

echo "==> building porthole-agent and porthole (release)"
cargo build --release --locked -p porthole-agent -p porthole-cli
bin=target/release

work=$(mktemp -d)
trap 'kill "$agent_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
"$bin/porthole-agent" -m unix-listen -p "$work/agent.sock" -t "$work/state" -l "$work/agent.log" &
agent_pid=$!
for _ in $(seq 100); do [ -S "$work/agent.sock" ] && break; sleep 0.05; done

run() { echo; echo "\$ porthole $*"; "$bin/porthole" "$@"; }
sock=(agent --socket "$work/agent.sock")
run "${sock[@]}" ping
run "${sock[@]}" os
run "${sock[@]}" hostname
run "${sock[@]}" timezone
run "${sock[@]}" exec -- uname -a
echo "hello from the guest" > "$work/greeting.txt"
run "${sock[@]}" cat "$work/greeting.txt"
run "${sock[@]}" call guest-sync '{"id": 42}'
run "${sock[@]}" info
echo
echo "agent log: $(wc -l < "$work/agent.log") lines; stopping the agent."
