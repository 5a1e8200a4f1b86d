# Optional (envs/dev: agent_space_enabled, off by default): an AWS DevOps
# Agent Space associated with this account, as AWS's Terraform guide for
# DevOps Agent does it with the awscc provider. The agent assumes the
# environment's read-only agent role (modules/iam), whose trust policy names
# the aidevops.amazonaws.com service principal with aws:SourceAccount and
# aws:SourceArn conditions. The operator app and the generic webhook cannot be
# created by Terraform (docs/deploy-aws.md lists the manual steps).

data "aws_caller_identity" "current" {}

resource "awscc_devopsagent_agent_space" "this" {
  name        = var.name
  description = "Investigations of ${var.name} (alarms forwarded by the investigator's webhook bridge)"
}

resource "awscc_devopsagent_association" "account" {
  agent_space_id = awscc_devopsagent_agent_space.this.agent_space_id
  service_id     = "aws"

  configuration = {
    aws = {
      assumable_role_arn = var.agent_role_arn
      account_id         = data.aws_caller_identity.current.account_id
      account_type       = "monitor"
    }
  }
}
