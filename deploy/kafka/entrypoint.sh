#!/usr/bin/env bash
# The container's broker: defaults + KAFKA_* overrides → server.properties, KRaft format once, then Kafka
# in the foreground (SIGTERM from `docker stop` reaches the JVM, which shuts down cleanly).
set -euo pipefail
CONF=/opt/kafka/config
PROPS=/tmp/server.properties
JAVA=(java ${KAFKA_HEAP_OPTS:-} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError
      -Djava.awt.headless=true "-Dlog4j2.configurationFile=$CONF/log4j2-container.yaml" ${KAFKA_OPTS:-}
      -cp '/opt/kafka/libs/*')

declare -A props=()
while IFS='=' read -r key value; do
    [[ -z "$key" || "$key" == \#* ]] && continue
    props[$key]=$value
done < "$CONF/server.properties"
while IFS='=' read -r name value; do
    case "$name" in KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_VERSION) continue ;; esac
    key=${name#KAFKA_}
    key=${key,,}; key=${key//___/-}; key=${key//__/@}; key=${key//_/.}; key=${key//@/_}
    props[$key]=$value
done < <(env | grep '^KAFKA_' || true)
: > "$PROPS"
for key in "${!props[@]}"; do printf '%s=%s\n' "$key" "${props[$key]}" >> "$PROPS"; done

DATA=${props[log.dirs]}
if [ ! -f "$DATA/meta.properties" ]; then
    CLUSTER_ID=${CLUSTER_ID:-$("${JAVA[@]}" kafka.tools.StorageTool random-uuid | tail -n 1)}
    "${JAVA[@]}" kafka.tools.StorageTool format --standalone -t "$CLUSTER_ID" -c "$PROPS" >/dev/null
    echo "formatted $DATA for cluster $CLUSTER_ID"
fi
exec "${JAVA[@]}" kafka.Kafka "$PROPS"
