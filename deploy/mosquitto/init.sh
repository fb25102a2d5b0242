#!/bin/sh
# Prepare Mosquitto's secrets in /mosquitto/secrets (the mqtt-secrets volume), run by the mqtt-init
# service of docker-compose.yml:
#  - passwd: the service user and the bridge user (mosquitto_passwd, hashed);
#  - ca.crt, server.crt, server.key: copied from deploy/mosquitto/certs/ when present (your own
#    certificates), otherwise a private CA and a server certificate for $MQTT_TLS_HOSTS, made once.
# The files are owned by the mosquitto user (uid 1883), which the broker runs as.
# (POSIX sh: the eclipse-mosquitto image is Alpine/busybox without bash.)
set -eu
# busybox ash knows pipefail too
set -o pipefail

out=/mosquitto/secrets
mkdir -p "$out"

: > "$out/passwd"
mosquitto_passwd -b "$out/passwd" "${MQTT_USERNAME:?}" "${MQTT_PASSWORD:?}"
mosquitto_passwd -b "$out/passwd" "${MQTT_BRIDGE_USERNAME:?}" "${MQTT_BRIDGE_PASSWORD:?}"

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
chmod 0600 "$out/passwd" "$out/server.key"
[ ! -f "$out/ca.key" ] || chmod 0600 "$out/ca.key"
chmod 0644 "$out/ca.crt" "$out/server.crt"
echo "mqtt secrets ready in $out"
