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
