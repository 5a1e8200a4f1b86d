output "cluster_name" {
  value = aws_ecs_cluster.this.name
}

output "cluster_arn" {
  value = aws_ecs_cluster.this.arn
}

output "service_name" {
  value = aws_ecs_service.app.name
}

output "task_definition_family" {
  value = aws_ecs_task_definition.app.family
}

output "task_definition_arn" {
  value = aws_ecs_task_definition.app.arn
}

output "container_name" {
  value = local.container_name
}

output "image" {
  value = local.image
}

output "security_group_id" {
  value = aws_security_group.tasks.id
}

output "fault_token_parameter_name" {
  value = one(aws_ssm_parameter.fault_token[*].name)
}
