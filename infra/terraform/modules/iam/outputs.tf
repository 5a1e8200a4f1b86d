output "execution_role_arn" {
  value = aws_iam_role.execution.arn
}

output "task_role_arn" {
  value = aws_iam_role.task.arn
}

output "agent_role_arn" {
  value = aws_iam_role.agent.arn
}

output "deploy_role_arn" {
  value = aws_iam_role.deploy.arn
}
