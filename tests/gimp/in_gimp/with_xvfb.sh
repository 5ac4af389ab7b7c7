#!/bin/sh
# Runs a command on a virtual X screen of its own:  with_xvfb.sh COMMAND [ARGUMENT...]
# (Not xvfb-run: it waits for a SIGUSR1 from Xvfb that never comes inside a PID namespace.)
display=99
while [ -e "/tmp/.X11-unix/X$display" ] || [ -e "/tmp/.X$display-lock" ]; do
    display=$((display + 1))
done
Xvfb ":$display" -screen 0 1280x860x24 -nolisten tcp >/dev/null 2>&1 &
server=$!
tries=0
while [ ! -e "/tmp/.X11-unix/X$display" ] && [ $tries -lt 600 ]; do
    sleep 0.1
    tries=$((tries + 1))
done
if [ ! -e "/tmp/.X11-unix/X$display" ]; then
    echo "with_xvfb.sh: Xvfb made no screen :$display within 60 s" >&2
    kill "$server" 2>/dev/null
    exit 1
fi
DISPLAY=":$display" "$@"
status=$?
kill "$server" 2>/dev/null
wait "$server" 2>/dev/null
exit $status
