# Where deployments are recorded. The deploy workflow overwrites the `latest`
# parameter with one JSON document per deployment (sha, message, author,
# image digest, task definition, previous task definition, time, status);
# SSM keeps the last 100 versions, so `aws ssm get-parameter-history` is the
# deployment history the investigator correlates alarms with.

resource "aws_ssm_parameter" "latest" {
  #checkov:skip=CKV2_AWS_34:Deployment metadata (commit, image digest, task definition) is not secret and must be readable by the investigator without kms:Decrypt.
  name        = "${var.path}/latest"
  description = "Latest deployment of ${var.name} (JSON, written by the deploy workflow)"
  type        = "String"
  tier        = "Standard"
  value = jsonencode({
    schema = 1
    status = "none"
    note   = "no deployment recorded yet"
  })

  # The deploy workflow owns the value after creation.
  lifecycle {
    ignore_changes = [value]
  }
}
