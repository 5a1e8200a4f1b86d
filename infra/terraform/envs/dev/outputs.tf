output "url" {
  description = "Where the service answers."
  value       = module.load_balancer.url
}

output "ecr_repository_url" {
  value = module.registry.repository_url
}

output "cluster_name" {
  value = module.ecs_service.cluster_name
}

output "service_name" {
  value = module.ecs_service.service_name
}

output "task_definition_family" {
  value = module.ecs_service.task_definition_family
}

output "container_name" {
  value = module.ecs_service.container_name
}

output "log_group_name" {
  value = module.observability.log_group_name
}

output "alarm_names" {
  value = module.observability.alarm_names
}

output "alarm_topic_arn" {
  value = module.observability.alarm_topic_arn
}

output "alarm_queue_url" {
  description = "The investigator reads alarms here."
  value       = module.observability.alarm_queue_url
}

output "alarm_dlq_url" {
  value = module.observability.alarm_dlq_url
}

output "deployment_parameter" {
  description = "SSM parameter holding the latest deployment record (history: aws ssm get-parameter-history)."
  value       = module.deployment_metadata.latest_parameter_name
}

output "deploy_role_arn" {
  description = "Set as the GitHub repository variable AWS_DEPLOY_ROLE_ARN."
  value       = module.iam.deploy_role_arn
}

output "agent_role_arn" {
  value = module.iam.agent_role_arn
}

output "fault_token_parameter" {
  description = "SecureString holding FAULT_TOKEN when faults are enabled (null otherwise)."
  value       = module.ecs_service.fault_token_parameter_name
}

output "investigation_bucket" {
  description = "Reports of the investigator worker (reports/<alarm>/<time>/)."
  value       = module.investigator.report_bucket
}

output "investigation_topic_arn" {
  description = "Subscribe for one line per investigation."
  value       = module.investigator.summary_topic_arn
}

output "webhook_secret_arn" {
  description = "Put the DevOps Agent webhook's HMAC key here (when devops_agent_webhook_url is set)."
  value       = module.investigator.webhook_secret_arn
}

output "agent_space_id" {
  description = "The DevOps Agent Space (when agent_space_enabled)."
  value       = one(module.agent_space[*].agent_space_id)
}
