# The investigator in AWS: one Fargate task running `devops-agent-demo aws
# worker`, which long-polls the alarm queue, investigates each ALARM episode
# with the same analyzers as the local runtime (crates/aws), writes the
# report to a private KMS-encrypted bucket and publishes a one-line summary.
#
# Its task role can read exactly what the sources read (CloudWatch Logs and
# metrics, SSM deployment history, ECS services/tasks, target health),
# consume the alarm queue, move poison messages to the DLQ, write reports,
# publish summaries. Task state changes are kept by an EventBridge rule in a
# log group, because DescribeTasks forgets stopped tasks after an hour.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account     = data.aws_caller_identity.current.account_id
  region      = data.aws_region.current.region
  partition   = data.aws_partition.current.partition
  bucket_name = "${var.name}-investigations-${local.account}"
  parameter   = "${var.deployment_parameter_path}/latest"

  environment = merge(
    {
      AWS_REGION                         = local.region
      INVESTIGATOR_LOG_GROUP             = var.log_group_name
      INVESTIGATOR_TASK_EVENTS_LOG_GROUP = aws_cloudwatch_log_group.task_events.name
      INVESTIGATOR_CLUSTER               = var.cluster_name
      INVESTIGATOR_SERVICE               = var.service_name
      INVESTIGATOR_LOAD_BALANCER         = var.load_balancer_arn_suffix
      INVESTIGATOR_TARGET_GROUP          = var.target_group_arn_suffix
      INVESTIGATOR_TARGET_GROUP_ARN      = var.target_group_arn
      INVESTIGATOR_DEPLOYMENT_PARAMETER  = local.parameter
      INVESTIGATOR_QUEUE_URL             = var.alarm_queue_url
      INVESTIGATOR_DLQ_URL               = var.alarm_dlq_url
      INVESTIGATOR_MAX_RECEIVES          = tostring(var.max_receives)
      INVESTIGATOR_BUCKET                = aws_s3_bucket.reports.bucket
      INVESTIGATOR_SUMMARY_TOPIC_ARN     = aws_sns_topic.summaries.arn
    },
    var.webhook_enabled ? {
      INVESTIGATOR_WEBHOOK_URL       = var.webhook_url
      INVESTIGATOR_WEBHOOK_SECRET_ID = aws_secretsmanager_secret.webhook[0].arn
    } : {}
  )
}

# ------------------------------------------------------------ report bucket

resource "aws_s3_bucket" "reports" {
  #checkov:skip=CKV_AWS_18:Server access logs need a second bucket; reads are by the worker's role and operators only, and CloudTrail data events can be enabled instead.
  #checkov:skip=CKV_AWS_144:Reports are reproducible from the alarm history and logs; cross-region replication doubles cost for no recovery need.
  #checkov:skip=CKV2_AWS_62:Nothing consumes bucket events: the SNS summary already announces each report.
  bucket = local.bucket_name
}

resource "aws_s3_bucket_ownership_controls" "reports" {
  bucket = aws_s3_bucket.reports.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "reports" {
  bucket                  = aws_s3_bucket.reports.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "reports" {
  bucket = aws_s3_bucket.reports.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "reports" {
  bucket = aws_s3_bucket.reports.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "reports" {
  bucket = aws_s3_bucket.reports.id

  rule {
    id     = "expire-reports"
    status = "Enabled"
    filter {}
    expiration {
      days = var.report_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.reports]
}

data "aws_iam_policy_document" "reports_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.reports.arn, "${aws_s3_bucket.reports.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "reports" {
  bucket     = aws_s3_bucket.reports.id
  policy     = data.aws_iam_policy_document.reports_bucket.json
  depends_on = [aws_s3_bucket_public_access_block.reports]
}

# -------------------------------------------------------- summaries and logs

resource "aws_sns_topic" "summaries" {
  name              = "${var.name}-investigations"
  kms_master_key_id = var.kms_key_arn
}

resource "aws_cloudwatch_log_group" "worker" {
  name              = "/ecs/${var.name}-investigator"
  retention_in_days = 365
  kms_key_id        = var.kms_key_arn
}

# ECS task state changes, kept for the task source (crates/aws/src/sources/ecs.rs).
resource "aws_cloudwatch_log_group" "task_events" {
  name              = "/aws/events/ecs/${var.name}"
  retention_in_days = 365
  kms_key_id        = var.kms_key_arn
}

resource "aws_cloudwatch_event_rule" "task_state" {
  name        = "${var.name}-task-state"
  description = "ECS task state changes of ${var.cluster_name}, for the investigator"
  event_pattern = jsonencode({
    source        = ["aws.ecs"]
    "detail-type" = ["ECS Task State Change"]
    detail        = { clusterArn = [var.cluster_arn] }
  })
}

resource "aws_cloudwatch_event_target" "task_state" {
  rule = aws_cloudwatch_event_rule.task_state.name
  arn  = aws_cloudwatch_log_group.task_events.arn
}

data "aws_iam_policy_document" "events_to_logs" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.task_events.arn}:*"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com", "delivery.logs.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.task_state.arn]
    }
  }
}

resource "aws_cloudwatch_log_resource_policy" "task_events" {
  policy_name     = "${var.name}-task-events"
  policy_document = data.aws_iam_policy_document.events_to_logs.json
}

# ------------------------------------------------------------ webhook secret

resource "aws_secretsmanager_secret" "webhook" {
  #checkov:skip=CKV2_AWS_57:The HMAC key is generated by the DevOps Agent console and rotated there; Secrets Manager cannot rotate it.
  count       = var.webhook_enabled ? 1 : 0
  name        = "${var.name}/devops-agent/webhook-hmac"
  description = "HMAC key of the Agent Space generic webhook (put the value by hand)"
  kms_key_id  = var.kms_key_arn
}

# ---------------------------------------------------------------- task role

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_iam_role" "worker" {
  name                 = "${var.name}-investigator"
  description          = "The investigator worker: reads what its sources read, consumes the alarm queue, writes reports"
  assume_role_policy   = data.aws_iam_policy_document.assume.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "worker" {
  statement {
    sid = "ReadWithoutResourceLevelPermissions"
    #checkov:skip=CKV_AWS_356:GetMetricData, ListMetrics, DescribeTargetHealth and DescribeAlarms/DescribeAlarmHistory do not support resource-level permissions; all are read-only.
    actions = [
      "cloudwatch:GetMetricData",
      "cloudwatch:ListMetrics",
      "cloudwatch:DescribeAlarms",
      "cloudwatch:DescribeAlarmHistory",
      "elasticloadbalancing:DescribeTargetHealth",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "ReadServiceLogsAndTaskEvents"
    actions   = ["logs:FilterLogEvents"]
    resources = ["${var.log_group_arn}:*", "${aws_cloudwatch_log_group.task_events.arn}:*"]
  }

  statement {
    sid       = "ReadDeploymentHistory"
    actions   = ["ssm:GetParameterHistory"]
    resources = ["arn:${local.partition}:ssm:${local.region}:${local.account}:parameter${local.parameter}"]
  }

  statement {
    sid     = "ReadEcsServiceAndTasks"
    actions = ["ecs:DescribeServices", "ecs:ListTasks", "ecs:DescribeTasks"]
    resources = [
      "arn:${local.partition}:ecs:${local.region}:${local.account}:service/${var.cluster_name}/${var.service_name}",
      "arn:${local.partition}:ecs:${local.region}:${local.account}:task/${var.cluster_name}/*",
      "arn:${local.partition}:ecs:${local.region}:${local.account}:container-instance/${var.cluster_name}/*",
    ]
  }

  statement {
    sid       = "ConsumeAlarmQueue"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
    resources = [var.alarm_queue_arn]
  }

  statement {
    sid       = "DeadLetterPoisonMessages"
    actions   = ["sqs:SendMessage"]
    resources = [var.alarm_dlq_arn]
  }

  statement {
    sid       = "WriteReports"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = ["${aws_s3_bucket.reports.arn}/*"]
  }

  statement {
    sid       = "PublishSummaries"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.summaries.arn]
  }

  statement {
    sid       = "EnvironmentKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }

  dynamic "statement" {
    for_each = var.webhook_enabled ? [1] : []
    content {
      sid       = "WebhookSecret"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [aws_secretsmanager_secret.webhook[0].arn]
    }
  }
}

resource "aws_iam_role_policy" "worker" {
  name   = "investigator"
  role   = aws_iam_role.worker.id
  policy = data.aws_iam_policy_document.worker.json
}

# ------------------------------------------------------------ task, service

resource "aws_security_group" "worker" {
  name        = "${var.name}-investigator"
  description = "Investigator worker: no inbound; HTTPS out to AWS APIs (through the NAT)"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "https" {
  #checkov:skip=CKV_AWS_382:The worker calls regional AWS API endpoints (and the optional webhook), whose addresses are not fixed; HTTPS only.
  security_group_id = aws_security_group.worker.id
  description       = "HTTPS to AWS APIs"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_ecs_task_definition" "worker" {
  family                   = "${var.name}-investigator"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = var.execution_role_arn
  task_role_arn            = aws_iam_role.worker.arn

  container_definitions = jsonencode([{
    name                   = "investigator"
    image                  = var.image
    essential              = true
    entryPoint             = ["/devops-agent-demo"]
    command                = ["aws", "worker"]
    readonlyRootFilesystem = true
    user                   = "65532"
    environment            = [for k in sort(keys(local.environment)) : { name = k, value = local.environment[k] }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.worker.name
        awslogs-region        = local.region
        awslogs-stream-prefix = "investigator"
      }
    }
  }])
}

resource "aws_ecs_service" "worker" {
  name             = "${var.name}-investigator"
  cluster          = var.cluster_arn
  task_definition  = aws_ecs_task_definition.worker.arn
  desired_count    = 1
  launch_type      = "FARGATE"
  platform_version = "LATEST"

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.worker.id]
    assign_public_ip = false
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
}

# ---------------------------------------------------------- worker's alarms

# Messages waiting too long: the worker is down or stuck.
resource "aws_cloudwatch_metric_alarm" "queue_age" {
  alarm_name          = "${var.name}-investigator-queue-age"
  alarm_description   = "Alarm messages wait more than 10 minutes: the investigator worker is not consuming."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = element(split(":", var.alarm_queue_arn), 5) }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = 600
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.summaries.arn]
  ok_actions          = [aws_sns_topic.summaries.arn]
}

# Any dead-lettered alarm is an investigation that did not happen.
resource "aws_cloudwatch_metric_alarm" "dlq_depth" {
  alarm_name          = "${var.name}-investigator-dlq-depth"
  alarm_description   = "Alarm messages in the DLQ: investigations failed after ${var.max_receives} receives (see the worker's log for the message id)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = element(split(":", var.alarm_dlq_arn), 5) }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.summaries.arn]
  ok_actions          = [aws_sns_topic.summaries.arn]
}
