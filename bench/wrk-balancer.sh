#!/usr/bin/env bash
# wrk-balancer.sh: how many WHIP redirects per second a balancer-only
# `cascade serve --role balancer` answers, next to nginx answering a fixed
# `return 307` on the same core. A measurement run by hand, not part of
# `make test`; the figures go to bench/RESULTS.md.
#
# Usage: bench/wrk-balancer.sh [duration, default 10s] [runs, default 3]
#
# Needs wrk and nginx (apt-get install -y wrk nginx) and 2 cores: each
# server runs alone on CPU 0 (taskset -c 0), wrk on CPU 1. wrk POSTs a
# 3 KB SDP offer with Content-Type application/sdp and a Bearer token, as a
# WHIP client does; it does not follow the 307. The cascade balancer
# checks the token, chooses a node from its cluster view (one media node,
# itself on CPU 1, idle) and signs a grant for the Location; nginx only
# discards the body and writes a constant Location.
set -euo pipefail

duration=${1:-10s}
runs=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /tmp/wrk-balancer.XXXXXX)
chmod 755 "$dir"
pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$dir"
}
trap cleanup EXIT

for tool in wrk nginx taskset; do
	command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y wrk nginx" >&2; exit 1; }
done
if [ "$(nproc)" -lt 2 ]; then
	echo "needs 2 CPUs (server on CPU 0, wrk on CPU 1)" >&2
	exit 1
fi

(cd "$root" && go build -o "$dir/cascade" ./cmd/cascade)

# A Chrome-like audio+video offer, padded with candidates to about 3 KB.
{
	printf 'v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n'
	printf 'a=group:BUNDLE 0 1\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS stream\r\n'
	printf 'm=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n'
	printf 'a=ice-ufrag:Wf3n\r\na=ice-pwd:9f7m2kOu1x5cJ4pS0bQvR3eD\r\na=ice-options:trickle\r\n'
	printf 'a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n'
	printf 'a=setup:actpass\r\na=mid:0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n'
	printf 'a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n'
	printf 'a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n'
	printf 'a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=sendonly\r\na=msid:stream audio0\r\na=rtcp-mux\r\n'
	printf 'a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n'
	printf 'a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\n'
	printf 'a=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\na=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\n'
	printf 'a=ssrc:1001 cname:bench\r\na=ssrc:1001 msid:stream audio0\r\n'
	printf 'm=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 100 101 45 46\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n'
	printf 'a=ice-ufrag:Wf3n\r\na=ice-pwd:9f7m2kOu1x5cJ4pS0bQvR3eD\r\na=ice-options:trickle\r\n'
	printf 'a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n'
	printf 'a=setup:actpass\r\na=mid:1\r\na=extmap:14 urn:ietf:params:rtp-hdrext:toffset\r\n'
	printf 'a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\na=extmap:13 urn:3gpp:video-orientation\r\n'
	printf 'a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n'
	printf 'a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay\r\n'
	printf 'a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=sendonly\r\na=msid:stream video0\r\na=rtcp-mux\r\na=rtcp-rsize\r\n'
	printf 'a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 goog-remb\r\na=rtcp-fb:96 transport-cc\r\na=rtcp-fb:96 ccm fir\r\n'
	printf 'a=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n'
	printf 'a=rtpmap:98 VP9/90000\r\na=rtcp-fb:98 goog-remb\r\na=rtcp-fb:98 transport-cc\r\na=rtcp-fb:98 ccm fir\r\n'
	printf 'a=rtcp-fb:98 nack\r\na=rtcp-fb:98 nack pli\r\na=fmtp:98 profile-id=0\r\na=rtpmap:99 rtx/90000\r\na=fmtp:99 apt=98\r\n'
	printf 'a=rtpmap:100 H264/90000\r\na=rtcp-fb:100 goog-remb\r\na=rtcp-fb:100 transport-cc\r\na=rtcp-fb:100 ccm fir\r\n'
	printf 'a=rtcp-fb:100 nack\r\na=rtcp-fb:100 nack pli\r\n'
	printf 'a=fmtp:100 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n'
	printf 'a=rtpmap:101 rtx/90000\r\na=fmtp:101 apt=100\r\na=rtpmap:45 AV1/90000\r\na=rtcp-fb:45 goog-remb\r\n'
	printf 'a=rtcp-fb:45 transport-cc\r\na=rtcp-fb:45 ccm fir\r\na=rtcp-fb:45 nack\r\na=rtcp-fb:45 nack pli\r\n'
	printf 'a=rtpmap:46 rtx/90000\r\na=fmtp:46 apt=45\r\na=ssrc-group:FID 2001 2002\r\n'
	printf 'a=ssrc:2001 cname:bench\r\na=ssrc:2001 msid:stream video0\r\na=ssrc:2002 cname:bench\r\na=ssrc:2002 msid:stream video0\r\n'
	for i in $(seq 1 8); do
		printf 'a=candidate:%d 1 udp 2122260223 192.168.%d.23 5%d123 typ host generation 0 network-id %d\r\n' \
			"$((1000000000 + i))" "$i" "$i" "$i"
	done
} > "$dir/offer.sdp"
bytes=$(wc -c < "$dir/offer.sdp")

# Lua strings cannot hold raw CR LF across lines; pass the body as a file.
cat > "$dir/post.lua" <<EOF
local f = assert(io.open("$dir/offer.sdp", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/sdp"
wrk.headers["Authorization"] = "Bearer devtoken"
EOF

# The cluster: one media node (CPU 1, idle) and the balancer (CPU 0).
taskset -c 1 "$dir/cascade" serve --dev --node-id a --listen 127.0.0.3:18081 --media-port 0 \
	--cluster-bind 127.0.0.3:17946 --data-dir "$dir/a" --log-level warn 2>"$dir/a.log" >/dev/null &
pids+=($!)
taskset -c 0 "$dir/cascade" serve --dev --node-id lb --role balancer --listen 127.0.0.5:18080 \
	--cluster-bind 127.0.0.5:17947 --join 127.0.0.3:17946 --data-dir "$dir/lb" --log-level warn 2>"$dir/lb.log" >/dev/null &
pids+=($!)

cat > "$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_buffer_size 16k;
	client_body_temp_path $dir/body;
	proxy_temp_path $dir/proxy;
	fastcgi_temp_path $dir/fastcgi;
	uwsgi_temp_path $dir/uwsgi;
	scgi_temp_path $dir/scgi;
	keepalive_requests 1000000;
	server {
		listen 127.0.0.1:18082;
		location / { return 307 http://127.0.0.3:9000/whip/x; }
	}
}
EOF
taskset -c 0 nginx -p "$dir" -c "$dir/nginx.conf" &
pids+=($!)

# Wait until the balancer redirects (its view holds the node) and nginx answers.
for _ in $(seq 1 100); do
	lb=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Authorization: Bearer devtoken' \
		-H 'Content-Type: application/sdp' --data-binary "@$dir/offer.sdp" http://127.0.0.5:18080/whip/bench || true)
	ng=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary "@$dir/offer.sdp" http://127.0.0.1:18082/whip/bench || true)
	[ "$lb" = 307 ] && [ "$ng" = 307 ] && break
	sleep 0.1
done
if [ "$lb" != 307 ] || [ "$ng" != 307 ]; then
	echo "servers not ready: balancer $lb, nginx $ng" >&2
	cat "$dir/lb.log" "$dir/nginx-error.log" >&2
	exit 1
fi
echo "balancer Location: $(curl -s -o /dev/null -w '%{redirect_url}' -X POST -H 'Authorization: Bearer devtoken' \
	-H 'Content-Type: application/sdp' --data-binary "@$dir/offer.sdp" http://127.0.0.5:18080/whip/bench)"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(date -u +%Y-%m-%dT%H:%MZ)"
echo "body: $bytes bytes of SDP"

# cputicks PID...: user+system CPU ticks (1/100 s) the processes used so far.
cputicks() {
	local sum=0 p f
	for p in "$@"; do
		read -ra f < "/proc/$p/stat"
		sum=$((sum + f[13] + f[14]))
	done
	echo "$sum"
}

# measure URL PID...: one wrk run after a 2 s warm-up; prints requests/s,
# the servers' CPU use (% of one core) and their CPU µs per request.
measure() {
	local url=$1
	shift
	taskset -c 1 wrk -t1 -c50 -d2s -s "$dir/post.lua" "$url" >/dev/null
	local t0 t1 rps secs
	t0=$(cputicks "$@")
	taskset -c 1 wrk -t1 -c50 -d"$duration" -s "$dir/post.lua" "$url" > "$dir/wrk.out"
	t1=$(cputicks "$@")
	if grep -q 'Non-2xx or 3xx' "$dir/wrk.out"; then
		echo "unexpected statuses from $url:" >&2
		cat "$dir/wrk.out" >&2
		exit 1
	fi
	rps=$(sed -n 's/^Requests\/sec: *//p' "$dir/wrk.out")
	secs=$(sed -n 's/.* requests in \([0-9.]*\)s,.*/\1/p' "$dir/wrk.out")
	awk -v r="$rps" -v s="$secs" -v t=$((t1 - t0)) \
		'BEGIN { printf "%.0f %.0f %.2f", r, t / s, (t / 100) / (r * s) * 1e6 }'
}

cascade_pid=${pids[1]}
nginx_workers=$(pgrep -P "${pids[2]}" | tr '\n' ' ')
echo "run  cascade: req/s cpu%% µs/req  nginx: req/s cpu%% µs/req  ratio req/s  ratio cpu/req" | sed 's/%%/%/g'
for run in $(seq 1 "$runs"); do
	# shellcheck disable=SC2086 # nginx_workers is a list of pids
	read -r cr cc cu <<< "$(measure http://127.0.0.5:18080/whip/bench "$cascade_pid")"
	read -r nr nc nu <<< "$(measure http://127.0.0.1:18082/whip/bench $nginx_workers)"
	echo "$run  $cr $cc $cu  $nr $nc $nu  $(awk -v a="$cr" -v b="$nr" 'BEGIN { printf "%.2f", a / b }')  $(awk -v a="$cu" -v b="$nu" 'BEGIN { printf "%.2f", a / b }')"
done
echo "last cascade wrk output:"
taskset -c 1 wrk -t1 -c50 -d"$duration" --latency -s "$dir/post.lua" http://127.0.0.5:18080/whip/bench
echo "last nginx wrk output:"
taskset -c 1 wrk -t1 -c50 -d"$duration" --latency -s "$dir/post.lua" http://127.0.0.1:18082/whip/bench
