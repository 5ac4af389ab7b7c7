#!/bin/sh
# Runs a command on a virtual X screen of its own:  with_xvfb.sh COMMAND [ARGUMENT...]
# (Not xvfb-run: it waits for a SIGUSR1 from Xvfb that never comes inside a PID namespace.)
#
# The display number must be free here and everywhere else: X's abstract sockets
# (@/tmp/.X11-unix/XN) belong to the network namespace, which a chroot shares with the machine
# and its other roots, and a client tries them first.  Two sessions choosing the same number at
# once: the loser's Xvfb dies at once and it tries the next.
in_use() {
    [ -e "/tmp/.X11-unix/X$1" ] || [ -e "/tmp/.X$1-lock" ] ||
        grep -q "@/tmp/.X11-unix/X$1\$" /proc/net/unix 2>/dev/null
}

log="/tmp/with_xvfb.$$.log"
display=99
attempts=0
while :; do
    while in_use "$display"; do
        display=$((display + 1))
    done
    Xvfb ":$display" -screen 0 1280x860x24 -nolisten tcp >"$log" 2>&1 &
    server=$!
    # Up to 60 s for its socket, however slow the machine; not a moment longer once Xvfb died.
    tries=0
    while [ ! -e "/tmp/.X11-unix/X$display" ] && [ $tries -lt 600 ] && kill -0 "$server" 2>/dev/null; do
        sleep 0.1
        tries=$((tries + 1))
    done
    [ -e "/tmp/.X11-unix/X$display" ] && break
    kill "$server" 2>/dev/null
    attempts=$((attempts + 1))
    if [ $attempts -ge 10 ]; then
        echo "with_xvfb.sh: Xvfb made no screen (last :$display after $((tries / 10)) s); it said:" >&2
        cat "$log" >&2
        rm -f "$log"
        exit 1
    fi
    display=$((display + 1))
done
DISPLAY=":$display" "$@"
status=$?
kill "$server" 2>/dev/null
wait "$server" 2>/dev/null
rm -f "$log"
exit $status
