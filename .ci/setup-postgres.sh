#!/usr/bin/env bash
# PostgreSQL for the shared fact store's tests (tests/unit/facts on both engines, the e2e run with
# [facts] url): Debian's postgresql package, its cluster started on 127.0.0.1:5432, a test role and
# database. The role's password is generated once into $PATCHWAVE_TEST_PG_DIR/postgres.password
# (0600); the URL (no password in it) goes to $PATCHWAVE_TEST_PG_DIR/postgres.url. The tests read
# those two files (or $PATCHWAVE_TEST_POSTGRES_URL / $PATCHWAVE_TEST_POSTGRES_PASSWORD_FILE).
# Idempotent. Assumes `apt-get update` already ran; runs as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
dir=${PATCHWAVE_TEST_PG_DIR:-/etc/patchwave-test}
role=patchwave_test
db=patchwave_test

if ! dpkg-query -W -f='${Status}' postgresql 2>/dev/null | grep -q '^install ok installed$'; then
  echo "installing: postgresql"
  apt-get install -y -q postgresql >/dev/null
fi

read -r version cluster port status _ < <(pg_lsclusters --no-header | head -n 1)
if [ -z "${version:-}" ]; then
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  pg_createcluster "$version" main >/dev/null
  read -r version cluster port status _ < <(pg_lsclusters --no-header | head -n 1)
fi
if [ "$status" != online ]; then
  pg_ctlcluster "$version" "$cluster" start
fi
echo "PostgreSQL $version/$cluster online on port $port"

mkdir -p "$dir"
chmod 0755 "$dir"
if [ ! -s "$dir/postgres.password" ]; then
  (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$dir/postgres.password")
fi
chmod 0600 "$dir/postgres.password"
password=$(cat "$dir/postgres.password")

psql_admin() { su postgres -c "psql -p $port -v ON_ERROR_STOP=1 -qtA $*"; }
if [ "$(psql_admin "-c \"SELECT 1 FROM pg_roles WHERE rolname = '$role'\"")" != 1 ]; then
  psql_admin "-c \"CREATE ROLE $role LOGIN CREATEDB\""
fi
# the password is set through stdin, never on a command line
printf "ALTER ROLE %s PASSWORD '%s';\n" "$role" "$password" | su postgres -c "psql -p $port -v ON_ERROR_STOP=1 -q"
if [ "$(psql_admin "-c \"SELECT 1 FROM pg_database WHERE datname = '$db'\"")" != 1 ]; then
  su postgres -c "createdb -p $port -O $role $db"
fi
echo "postgresql://$role@127.0.0.1:$port/$db?sslmode=disable" >"$dir/postgres.url"
echo "test database: $(cat "$dir/postgres.url") (password in $dir/postgres.password)"
