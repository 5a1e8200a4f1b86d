output "path" {
  value = var.path
}

output "latest_parameter_name" {
  value = aws_ssm_parameter.latest.name
}

output "latest_parameter_arn" {
  value = aws_ssm_parameter.latest.arn
}
