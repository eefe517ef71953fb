#!/usr/bin/env bash
# Start the services the test suite needs: PostgreSQL (for the serve concurrency/crash tests)
# and headless Chromium + chromedriver (for the browser test). Idempotent; Debian 12, as root.
# Writes PREFLOOP_TEST_POSTGRES_URL to .ci/services.env (mode 600) for .ci/run to source;
# the generated database password is never printed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
env_file="$here/services.env"
db_name="prefloop_test"
db_user="prefloop_test"

need=()
for pkg in postgresql chromium chromium-driver; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "services: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

version="$(ls /usr/lib/postgresql | sort -V | tail -n1)"
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q .; then
  pg_createcluster "$version" main >/dev/null
fi
pg_ctlcluster "$version" main start >/dev/null 2>&1 || true
pg_ctlcluster "$version" main status >/dev/null
port="$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')"

# Reuse the password from an earlier run so open connections and other shells stay valid.
password=""
if [[ -f "$env_file" ]]; then
  password="$(sed -n 's#^export PREFLOOP_TEST_POSTGRES_URL=postgresql://[^:]*:\([^@]*\)@.*#\1#p' "$env_file")"
fi
[[ -n "$password" ]] || password="$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"

psql_admin() { su postgres -c "psql -v ON_ERROR_STOP=1 -q -p $port $*"; }
psql_admin "-tAc \"SELECT 1 FROM pg_roles WHERE rolname = '$db_user'\"" | grep -q 1 \
  || psql_admin "-c \"CREATE ROLE $db_user LOGIN CREATEDB\""
psql_admin "-c \"ALTER ROLE $db_user PASSWORD '$password'\"" >/dev/null
psql_admin "-tAc \"SELECT 1 FROM pg_database WHERE datname = '$db_name'\"" | grep -q 1 \
  || psql_admin "-c \"CREATE DATABASE $db_name OWNER $db_user\""

umask 077
printf 'export PREFLOOP_TEST_POSTGRES_URL=postgresql://%s:%s@127.0.0.1:%s/%s\n' \
  "$db_user" "$password" "$port" "$db_name" >"$env_file"
echo "services: postgresql $version on port $port (database $db_name), chromium $(chromium --version 2>/dev/null | awk '{print $2}')"
echo "services: wrote $env_file"
