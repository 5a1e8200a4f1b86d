# Logs, the log metric filter, the alarms and the alarm path
# (alarm -> encrypted SNS topic -> encrypted SQS queue with a dead-letter
# queue, where the investigator reads).
#
# Every alarm and metric filter comes from the catalogue
# (config/observability.yaml) through var.catalog: this module defines none of
# its own, so the local runtime and AWS cannot drift apart.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  region    = data.aws_region.current.region
  partition = data.aws_partition.current.partition

  log_group_name      = var.catalog.logs.group
  exec_log_group_name = "${var.catalog.logs.group}/ecs-exec"
  flow_log_group_name = "${var.catalog.logs.group}/vpc-flow-logs"

  metric_filters = { for f in var.catalog.metric_filters : f.name => f }
  alarms         = { for a in var.catalog.alarms : a.name => a }

  # The unit each custom metric must be published with: the unit of the
  # catalogue's alarms on it. An alarm that names a unit only sees datapoints
  # published with that unit, so a filter without it would leave the alarm
  # in INSUFFICIENT_DATA forever.
  filter_units = {
    for f in var.catalog.metric_filters : f.name => distinct([
      for a in var.catalog.alarms : a.unit
      if a.namespace == f.metric_namespace && a.metric_name == f.metric_name
    ])
  }

  # The catalogue names the resource an alarm's metric is about; this maps
  # that name to CloudWatch's dimension set for this environment.
  dimension_sets = {
    service = {
      ClusterName = var.cluster_name
      ServiceName = var.service_name
    }
    target_group = {
      LoadBalancer = var.load_balancer_arn_suffix
      TargetGroup  = var.target_group_arn_suffix
    }
    load_balancer = {
      LoadBalancer = var.load_balancer_arn_suffix
    }
    none = {}
  }

  alarm_arn_prefix = "arn:${local.partition}:cloudwatch:${local.region}:${local.account}:alarm:${var.name}-"
}

# ---------------------------------------------------------------- encryption

# One customer-managed key for the telemetry path. A CMK (not the AWS-managed
# aws/sns key) is required: CloudWatch alarms cannot publish to a topic whose
# key policy does not name cloudwatch.amazonaws.com.
data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:A key policy's Resource "*" means this key only; the root statement is AWS's default key policy, which delegates access control to IAM policies.
  #checkov:skip=CKV_AWS_111:A key policy's Resource "*" means this key only; write access is granted to the account root (delegation to IAM) and to named services under source-account conditions.
  #checkov:skip=CKV_AWS_356:Key policies must use Resource "*" (the key the policy is attached to).
  statement {
    sid       = "AccountAdministersTheKeyAndGrantsUseThroughIAM"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncryptsThisServicesLogGroups"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account}:log-group:${local.log_group_name}*"]
    }
  }

  statement {
    sid       = "CloudWatchAlarmsPublishToTheEncryptedTopic"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }

  statement {
    sid       = "SnsDeliversToTheEncryptedQueue"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["sns.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_kms_key" "this" {
  description             = "${var.name}: logs, alarm topic, alarm queue, ECS Exec sessions, SSM secrets"
  enable_key_rotation     = true
  deletion_window_in_days = 7
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

# ---------------------------------------------------------------------- logs

resource "aws_cloudwatch_log_group" "app" {
  #checkov:skip=CKV_AWS_338:Retention is the catalogue's logs.retention_days (7 days, as the architecture specifies); one year of demo logs is cost without value.
  name              = local.log_group_name
  retention_in_days = var.catalog.logs.retention_days
  kms_key_id        = aws_kms_key.this.arn
}

# Audit trail of ECS Exec sessions (who ran what inside a task).
resource "aws_cloudwatch_log_group" "exec" {
  #checkov:skip=CKV_AWS_338:Exec session audit logs follow the catalogue's retention for this dev environment; raise it with the catalogue for production.
  name              = local.exec_log_group_name
  retention_in_days = var.catalog.logs.retention_days
  kms_key_id        = aws_kms_key.this.arn
}

resource "aws_cloudwatch_log_group" "flow" {
  #checkov:skip=CKV_AWS_338:Flow logs are kept as long as the application logs they explain (catalogue retention).
  name              = local.flow_log_group_name
  retention_in_days = var.catalog.logs.retention_days
  kms_key_id        = aws_kms_key.this.arn
}

# The catalogue's metric filters, e.g. ErrorCount on `{ $.level = "ERROR" }`.
# JSON filter patterns match the service's JSON log lines; the original's
# space-delimited pattern never matched them.
resource "aws_cloudwatch_log_metric_filter" "catalog" {
  for_each = local.metric_filters

  name           = "${var.name}-${each.key}"
  log_group_name = aws_cloudwatch_log_group.app.name
  pattern        = each.value.pattern

  metric_transformation {
    namespace     = each.value.metric_namespace
    name          = each.value.metric_name
    value         = each.value.metric_value
    default_value = each.value.default_value
    unit          = length(local.filter_units[each.key]) == 1 ? local.filter_units[each.key][0] : null
  }

  lifecycle {
    precondition {
      condition     = length(local.filter_units[each.key]) <= 1
      error_message = "The catalogue's alarms on this metric disagree on its unit."
    }
  }
}

# -------------------------------------------------------------------- alarms

resource "aws_cloudwatch_metric_alarm" "catalog" {
  for_each = local.alarms

  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric_name
  dimensions          = local.dimension_sets[each.value.dimensions]
  statistic           = startswith(each.value.statistic, "p") ? null : each.value.statistic
  extended_statistic  = startswith(each.value.statistic, "p") ? each.value.statistic : null
  comparison_operator = each.value.comparison
  threshold           = each.value.threshold
  unit                = each.value.unit
  period              = each.value.period_seconds
  evaluation_periods  = each.value.evaluation_periods
  datapoints_to_alarm = each.value.datapoints_to_alarm
  treat_missing_data  = each.value.treat_missing_data

  alarm_actions = [aws_sns_topic.alarms.arn]
  ok_actions    = [aws_sns_topic.alarms.arn]

  # A custom metric exists only once the filter has matched; create the
  # filter first so the alarm never points at a metric nobody emits.
  depends_on = [aws_cloudwatch_log_metric_filter.catalog]
}

# ------------------------------------------------------------ alarm delivery

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = aws_kms_key.this.arn
}

data "aws_iam_policy_document" "topic" {
  statement {
    sid       = "OwnerManagesTheTopic"
    actions   = ["sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:Subscribe", "sns:ListSubscriptionsByTopic", "sns:Publish", "sns:DeleteTopic"]
    resources = [aws_sns_topic.alarms.arn]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account}:root"]
    }
  }

  statement {
    sid       = "OnlyThisEnvironmentsAlarmsPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["${local.alarm_arn_prefix}*"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }

  statement {
    sid       = "DenyPlainTransport"
    effect    = "Deny"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]
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

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.topic.json
}

# Messages the investigator failed to process maxReceiveCount times land here
# instead of being lost or retried forever.
resource "aws_sqs_queue" "alarms_dlq" {
  name                      = "${var.name}-alarms-dlq"
  kms_master_key_id         = aws_kms_key.this.arn
  message_retention_seconds = 1209600
}

resource "aws_sqs_queue" "alarms" {
  name                       = "${var.name}-alarms"
  kms_master_key_id          = aws_kms_key.this.arn
  message_retention_seconds  = 345600
  visibility_timeout_seconds = var.investigation_timeout_seconds
  receive_wait_time_seconds  = 20

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.alarms_dlq.arn
    maxReceiveCount     = var.max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "alarms_dlq" {
  queue_url = aws_sqs_queue.alarms_dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.alarms.arn]
  })
}

data "aws_iam_policy_document" "queue" {
  statement {
    sid       = "OnlyTheAlarmTopicSends"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.alarms.arn]
    principals {
      type        = "Service"
      identifiers = ["sns.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_sns_topic.alarms.arn]
    }
  }

  statement {
    sid       = "DenyPlainTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.alarms.arn]
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

resource "aws_sqs_queue_policy" "alarms" {
  queue_url = aws_sqs_queue.alarms.id
  policy    = data.aws_iam_policy_document.queue.json
}

# Raw delivery: the queue message body is CloudWatch's alarm JSON itself
# (AlarmName, NewStateValue, NewStateReason, StateChangeTime, Trigger, ...).
resource "aws_sns_topic_subscription" "investigator" {
  topic_arn            = aws_sns_topic.alarms.arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.alarms.arn
  raw_message_delivery = true
}

resource "aws_sns_topic_subscription" "email" {
  for_each = toset(var.alarm_emails)

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = each.value
}

# ---------------------------------------------------------------- dashboard

# One widget per catalogue alarm (its metric, statistic, period and
# threshold line, the same dimensions as the alarm), then per-route errors
# from the service's JSON logs. Generated from the catalogue: an alarm added
# there appears here with no edit.
locals {
  dashboard_alarm_widgets = [
    for i, a in var.catalog.alarms : {
      type   = "metric"
      x      = (i % 2) * 12
      y      = floor(i / 2) * 6
      width  = 12
      height = 6
      properties = {
        title  = "${a.name}: ${a.metric_name} (${a.statistic}) ${a.comparison} ${a.threshold}"
        region = local.region
        stat   = a.statistic
        period = a.period_seconds
        metrics = [
          concat([a.namespace, a.metric_name], flatten([
            for k, v in local.dimension_sets[a.dimensions] : [k, v]
          ]))
        ]
        annotations = {
          horizontal = [{ label = a.name, value = a.threshold }]
        }
      }
    }
  ]
  dashboard_route_errors = {
    type   = "log"
    x      = 0
    y      = ceil(length(var.catalog.alarms) / 2) * 6
    width  = 24
    height = 6
    properties = {
      title  = "5xx and ERROR lines per route"
      region = local.region
      view   = "timeSeries"
      query  = "SOURCE '${local.log_group_name}' | filter level = 'ERROR' or status >= 500 | stats count(*) as errors by bin(1m), route"
    }
  }
}

resource "aws_cloudwatch_dashboard" "service" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = concat(local.dashboard_alarm_widgets, [local.dashboard_route_errors])
  })
}
