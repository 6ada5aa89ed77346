{{/* The relay's pod template, shared by the DaemonSet and the StatefulSet: the same settings as
the Kustomize kit's daemonset and gateway overlays (see the comments there for the reasons). */}}
{{- define "relay.podTemplate" -}}
{{- $daemonset := eq .Values.mode "daemonset" -}}
{{- $queueDir := "/var/lib/skywalking-kafka-relay" -}}
metadata:
  labels:
    {{- include "relay.labels" . | nindent 4 }}
  annotations:
    prometheus.io/scrape: "true"
    prometheus.io/port: "1234"
    prometheus.io/path: /metrics
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- if include "relay.ownsSecret" . }}
    checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
    {{- end }}
spec:
  enableServiceLinks: false
  automountServiceAccountToken: false
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- $tolerations := include "relay.setting" (dict "root" . "name" "tolerations") | fromYamlArray }}
  {{- with $tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.priorityClassName }}
  priorityClassName: {{ .Values.priorityClassName }}
  {{- else if and $daemonset .Values.priorityClass.create }}
  priorityClassName: {{ include "relay.fullname" . }}-node
  {{- end }}
  {{- with .Values.image.pullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ . }}
    {{- end }}
  {{- end }}
  # Grace rule: >= SW_RELAY_SHUTDOWN_TIMEOUT_S + 10 (drain and Kafka flush share the budget).
  terminationGracePeriodSeconds: {{ add .Values.shutdownTimeoutSeconds 10 }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 10001
    runAsGroup: 10001
    {{- if not $daemonset }}
    fsGroup: 10001
    fsGroupChangePolicy: OnRootMismatch
    {{- end }}
    seccompProfile:
      type: RuntimeDefault
  {{- if not $daemonset }}
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "relay.selectorLabels" . | nindent 10 }}
  {{- end }}
  {{- if and $daemonset (not .Values.persistence.preprovisioned) }}
  initContainers:
    # hostPath ignores fsGroup: hands the node directory to uid 10001 once, as root with only
    # CHOWN and FOWNER (persistence.preprovisioned: true when the nodes already have it).
    - name: queue-dir-owner
      image: {{ include "relay.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      command:
        - bash
        - -c
        - |
          set -eu
          dir={{ $queueDir }}
          if [ "$(stat -c %u:%g "$dir")" != 10001:10001 ]; then
            chown 10001:10001 "$dir"
            chmod 0700 "$dir"
          fi
      securityContext:
        runAsNonRoot: false
        runAsUser: 0
        runAsGroup: 0
        readOnlyRootFilesystem: true
        allowPrivilegeEscalation: false
        capabilities:
          drop: [ALL]
          add: [CHOWN, FOWNER]
      resources:
        requests:
          cpu: 10m
          memory: 16Mi
        limits:
          memory: 32Mi
      volumeMounts:
        - name: queue
          mountPath: {{ $queueDir }}
  {{- end }}
  containers:
    - name: skywalking-kafka-relay
      image: {{ include "relay.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      ports:
        - name: relay-grpc
          containerPort: 11800
        - name: relay-http
          containerPort: 12800
        - name: relay-admin
          containerPort: 1234
      envFrom:
        - configMapRef:
            name: {{ include "relay.fullname" . }}
      env:
        - name: SW_RELAY_GRPC_ADDRESS
          value: "[::]:11800"
        - name: SW_RELAY_HTTP_ADDRESS
          value: "[::]:12800"
        - name: SW_RELAY_ADMIN_ADDRESS
          value: "[::]:1234"
        {{- if not (hasKey .Values.kafka.producer "client.id") }}
        - name: SW_RELAY_KAFKA_PRODUCER_CLIENT_ID
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- end }}
        - name: SW_RELAY_QUEUE_DIR
          value: {{ $queueDir }}
        - name: SW_RELAY_GRPC_MAX_CONNECTIONS
          value: {{ include "relay.setting" (dict "root" . "name" "maxConnections") | quote }}
        - name: SW_RELAY_CLIENT_MEMORY_BYTES
          value: {{ include "relay.setting" (dict "root" . "name" "clientMemoryBytes") | quote }}
        - name: SW_RELAY_QUEUE_MAX_BYTES
          value: {{ include "relay.setting" (dict "root" . "name" "queueMaxBytes") | quote }}
        - name: SW_RELAY_SHUTDOWN_TIMEOUT_S
          value: {{ .Values.shutdownTimeoutSeconds | quote }}
        {{- if not $daemonset }}
        # Agents reconnect every 10 minutes and spread over replicas added later.
        - name: SW_RELAY_GRPC_MAX_CONNECTION_AGE_S
          value: "600"
        {{- end }}
        - name: SW_RELAY_AUTH_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ include "relay.secretName" . }}
              key: auth-token
              {{- if $daemonset }}
              optional: true
              {{- end }}
        - name: SW_RELAY_KAFKA_PRODUCER_SASL_PASSWORD
          valueFrom:
            secretKeyRef:
              name: {{ include "relay.secretName" . }}
              key: {{ .Values.kafka.saslPasswordKey }}
              optional: true
        {{- if .Values.tls.existingSecret }}
        - name: SW_RELAY_GRPC_TLS_CERT
          value: /etc/skywalking-kafka-relay/tls/tls.crt
        - name: SW_RELAY_GRPC_TLS_KEY
          value: /etc/skywalking-kafka-relay/tls/tls.key
        {{- end }}
        {{- if .Values.oap.tls.existingSecret }}
        - name: SW_RELAY_OAP_TLS_CA
          value: /etc/skywalking-kafka-relay/oap-tls/ca.crt
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      # Recovery reads the queue before the ports open; give a large backlog two minutes.
      startupProbe:
        tcpSocket:
          port: relay-grpc
        periodSeconds: 2
        failureThreshold: 60
      livenessProbe:
        httpGet:
          path: /healthz
          port: relay-admin
        periodSeconds: 10
        timeoutSeconds: 3
        failureThreshold: 3
      # Takes only this relay out of its Service, when its queue cannot take more.
      readinessProbe:
        httpGet:
          path: /readyz
          port: relay-admin
        periodSeconds: 5
        timeoutSeconds: 3
        failureThreshold: 2
      resources:
        {{- include "relay.setting" (dict "root" . "name" "resources") | nindent 8 }}
      securityContext:
        {{- include "relay.containerSecurityContext" . | nindent 8 }}
      volumeMounts:
        - name: queue
          mountPath: {{ $queueDir }}
        {{- if .Values.tls.existingSecret }}
        - name: tls
          mountPath: /etc/skywalking-kafka-relay/tls
          readOnly: true
        {{- end }}
        {{- if .Values.oap.tls.existingSecret }}
        - name: oap-tls
          mountPath: /etc/skywalking-kafka-relay/oap-tls
          readOnly: true
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  {{- if or $daemonset .Values.tls.existingSecret .Values.oap.tls.existingSecret .Values.extraVolumes }}
  volumes:
    {{- if $daemonset }}
    - name: queue
      hostPath:
        path: {{ .Values.persistence.hostPath }}
        type: {{ if .Values.persistence.preprovisioned }}Directory{{ else }}DirectoryOrCreate{{ end }}
    {{- end }}
    {{- with .Values.tls.existingSecret }}
    - name: tls
      secret:
        secretName: {{ . }}
    {{- end }}
    {{- with .Values.oap.tls.existingSecret }}
    - name: oap-tls
      secret:
        secretName: {{ . }}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
{{- end -}}
