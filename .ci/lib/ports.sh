# Sourced by the checks that start the bridge on 127.0.0.1:0: the ports the kernel gave it, read
# from its "accepting webhooks" JSON log line (a port found free beforehand can be taken by another
# process before the bridge binds it).

# bridge_ports LOG PID [SECONDS]: prints "PORT ADMIN_PORT" once the line is in LOG; fails if PID
# exits first or SECONDS (30) pass.
bridge_ports() {
  local log=$1 pid=$2 tries=$((${3:-30} * 10)) line
  for _ in $(seq 1 "$tries"); do
    line=$(grep -m1 '"message":"accepting webhooks"' "$log" 2>/dev/null || true)
    if [ -n "$line" ]; then
      python3 -c 'import json, sys
d = json.loads(sys.argv[1])
print(d["listen"].rsplit(":", 1)[1], d["admin"].rsplit(":", 1)[1])' "$line"
      return
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
