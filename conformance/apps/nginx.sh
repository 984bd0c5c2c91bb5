#!/bin/sh
# nginx 1.22 as a black box for `quiesce conform`: a plain HTTP server whose
# requests the scripts' app answers upstream (nginx cannot sleep by itself;
# the scripts' slow requests need an app that does). The app runs beside it
# on a unix socket and leaves when nginx does.
#
#   conformance/apps/nginx.sh <host:port> <workers> <keepalive seconds> <graceful-timeout seconds> [<max body bytes>]
#
# The largest body (client_max_body_size; 1m, nginx's default, if not given): {max-body}, for the
# script that sends a body too large.
#
# nginx's graceful stop is QUIT (TERM is its fast stop), its reload HUP:
#   npm run conformance -- --stop-signal QUIT --worker-pattern 'nginx: worker' \
#     --bind 127.0.0.1:8124 --server "conformance/apps/nginx.sh 127.0.0.1:8124 {workers} {keepalive} {graceful-timeout} {max-body}"
set -eu
bind=$1 workers=$2 keepalive=$3 grace=$4 maxbody=${5:-1m}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/quiesce-nginx-XXXXXX")
mkdir -p "$dir/logs"
# nginx's workers run as nobody: they must reach the app's socket.
chmod 755 "$dir"
python3 "$here/threaded_wsgi.py" "$dir/app.sock" &
while [ ! -S "$dir/app.sock" ]; do sleep 0.02; done
chmod 666 "$dir/app.sock"
cat > "$dir/nginx.conf" <<CONF
worker_processes $workers;
worker_shutdown_timeout ${grace}s;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_timeout ${keepalive}s;
  client_max_body_size $maxbody;
  upstream app { server unix:$dir/app.sock; keepalive 16; }
  server {
    listen $bind;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Request-Id \$http_x_request_id;
      proxy_read_timeout 1h;
    }
  }
}
CONF
exec nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;'
