# The FIS sidecar (aws:ecs:task actions): registers this task as an SSM managed instance tagged
# with its task ARN, so that FIS can send the fault's SSM document to it, then runs the agent.
# On SIGTERM (the task stopping) it deletes the activation and deregisters the instance, so no
# managed instance outlives its task. Not essential: if it fails, the service runs on and only
# the brownout experiment fails (FIS finds no managed instance for the task).
set -euo pipefail
dnf install -y --quiet jq awscli procps-ng >/dev/null || yum install -y -q jq awscli procps >/dev/null

metadata=$(curl -fsS "${ECS_CONTAINER_METADATA_URI_V4}/task")
task_arn=$(jq -er .TaskARN <<<"$metadata")
zone=$(jq -er .AvailabilityZone <<<"$metadata")
region=${zone%?}

activation=$(aws ssm create-activation --region "$region" --iam-role "$MANAGED_INSTANCE_ROLE_NAME" \
  --default-instance-name "ecs-${task_arn##*/}" --registration-limit 1 \
  --tags "Key=ECS_TASK_ARN,Value=$task_arn" "Key=ECS_TASK_AVAILABILITY_ZONE,Value=$zone" \
  "Key=FAULT_INJECTION_SIDECAR,Value=true")
activation_id=$(jq -er .ActivationId <<<"$activation")
amazon-ssm-agent -register -code "$(jq -er .ActivationCode <<<"$activation")" \
  -id "$activation_id" -region "$region"

cleanup() {
  aws ssm delete-activation --region "$region" --activation-id "$activation_id" || true
  instance=$(jq -er .ManagedInstanceID /var/lib/amazon/ssm/registration || true)
  [ -n "$instance" ] && aws ssm deregister-managed-instance --region "$region" --instance-id "$instance" || true
  kill -TERM "$agent" 2>/dev/null || true
}
trap cleanup TERM INT

amazon-ssm-agent &
agent=$!
wait "$agent"
