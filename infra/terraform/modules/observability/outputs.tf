output "kms_key_arn" {
  value = aws_kms_key.this.arn
}

output "log_group_name" {
  value = aws_cloudwatch_log_group.app.name
}

output "log_group_arn" {
  value = aws_cloudwatch_log_group.app.arn
}

output "exec_log_group_name" {
  value = aws_cloudwatch_log_group.exec.name
}

output "exec_log_group_arn" {
  value = aws_cloudwatch_log_group.exec.arn
}

output "flow_log_group_arn" {
  value = aws_cloudwatch_log_group.flow.arn
}

output "alarm_topic_arn" {
  value = aws_sns_topic.alarms.arn
}

output "alarm_queue_url" {
  value = aws_sqs_queue.alarms.id
}

output "alarm_queue_arn" {
  value = aws_sqs_queue.alarms.arn
}

output "alarm_dlq_url" {
  value = aws_sqs_queue.alarms_dlq.id
}

output "alarm_names" {
  value = { for k, a in aws_cloudwatch_metric_alarm.catalog : k => a.alarm_name }
}

output "alarm_arn_prefix" {
  value = local.alarm_arn_prefix
}

output "dashboard_name" {
  description = "CloudWatch dashboard generated from the catalogue."
  value       = aws_cloudwatch_dashboard.service.dashboard_name
}

output "alarm_dlq_arn" {
  value = aws_sqs_queue.alarms_dlq.arn
}
