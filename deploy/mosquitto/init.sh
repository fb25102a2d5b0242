#!/bin/sh
# Prepare Mosquitto's files, run by the mqtt-init service of docker-compose.yml:
#  - /mosquitto/data/dynamic-security.json (the mosquitto-data volume), once: the dynamic-security
#    plugin's file with the admin login meterline-admin only ($MQTT_ADMIN_PASSWORD, PBKDF2-hashed by
#    mosquitto_ctrl). The plugin keeps it up to date from then on (tenant logins); the roles and the
#    bridge login are applied over MQTT by `meterline mqtt-login setup` (the init service);
#  - ca.crt, server.crt, server.key in /mosquitto/secrets (the mqtt-secrets volume): copied from
#    deploy/mosquitto/certs/ when present (your own certificates), otherwise a private CA and a server
#    certificate for $MQTT_TLS_HOSTS, made once.
# The files are owned by the mosquitto user (uid 1883), which the broker runs as.
# (POSIX sh: the eclipse-mosquitto image is Alpine/busybox without bash.)
set -eu
# busybox ash knows pipefail too
set -o pipefail

out=/mosquitto/secrets
data=/mosquitto/data
mkdir -p "$out" "$data"
chmod 0700 "$data"

if [ ! -f "$data/dynamic-security.json" ]; then
    mosquitto_ctrl dynsec init "$data/dynamic-security.json" meterline-admin "${MQTT_ADMIN_PASSWORD:?}" >/dev/null
fi
chown -R 1883:1883 "$data"
chmod 0600 "$data/dynamic-security.json"

if [ -f /deploy/certs/server.crt ] && [ -f /deploy/certs/server.key ] && [ -f /deploy/certs/ca.crt ]; then
    cp /deploy/certs/ca.crt /deploy/certs/server.crt /deploy/certs/server.key "$out/"
elif [ ! -f "$out/server.crt" ]; then
    command -v openssl >/dev/null 2>&1 || apk add --no-cache openssl >/dev/null
    san=""
    for host in $(echo "${MQTT_TLS_HOSTS:-localhost}" | tr ',' ' '); do
        san="${san:+$san,}DNS:$host"
    done
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 -subj "/CN=Meterline MQTT CA" \
        -keyout "$out/ca.key" -out "$out/ca.crt"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=mosquitto" -keyout "$out/server.key" -out "$out/server.csr"
    printf 'subjectAltName=%s,IP:127.0.0.1\n' "$san" > "$out/san.ext"
    openssl x509 -req -in "$out/server.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
        -days 825 -sha256 -extfile "$out/san.ext" -out "$out/server.crt"
    rm -f "$out/server.csr" "$out/san.ext" "$out/ca.srl"
fi

chown -R 1883:1883 "$out"
chmod 0600 "$out/server.key"
[ ! -f "$out/ca.key" ] || chmod 0600 "$out/ca.key"
chmod 0644 "$out/ca.crt" "$out/server.crt"
echo "mqtt secrets ready in $out"
