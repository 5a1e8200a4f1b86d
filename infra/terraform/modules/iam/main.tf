# Roles for the service, the investigator and the pipeline, least privilege:
#
# - execution role: ECS pulls the image, writes logs, reads the app's secrets;
# - task role: what the app itself may do, which is only ECS Exec (its SSM
#   channels and session logging; the original enabled Exec without these);
# - agent role: read-only view for the DevOps agent / investigator (ECS,
#   CloudWatch, Logs, ELB, EC2, ECR, deployment records) plus consuming the
#   alarm queue;
# - deploy role: assumed by GitHub Actions through OIDC (no long-lived keys),
#   only from this repository's deploy branch.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  region    = data.aws_region.current.region
  partition = data.aws_partition.current.partition
  arn_base  = "${local.partition}:${local.region}:${local.account}"

  cluster_arn         = "arn:${local.partition}:ecs:${local.region}:${local.account}:cluster/${var.cluster_name}"
  service_arn         = "arn:${local.partition}:ecs:${local.region}:${local.account}:service/${var.cluster_name}/${var.service_name}"
  task_arns           = "arn:${local.partition}:ecs:${local.region}:${local.account}:task/${var.cluster_name}/*"
  app_parameters_arn  = "arn:${local.partition}:ssm:${local.region}:${local.account}:parameter${var.app_parameter_path}/*"
  deployments_arn     = "arn:${local.partition}:ssm:${local.region}:${local.account}:parameter${var.deployment_parameter_path}/*"
  log_groups_arn      = "arn:${local.partition}:logs:${local.region}:${local.account}:log-group:${var.log_group_name}*"
  github_oidc_subject = "repo:${var.github_repository}:ref:refs/heads/${var.github_deploy_branch}"
}

# ----------------------------------------------------------- execution role

data "aws_iam_policy_document" "ecs_tasks_assume" {
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
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${local.region}:${local.account}:*"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  description        = "ECS agent: pull the image, write logs, read the app's secrets"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid = "EcrLoginHasNoResourceLevelPermission"
    #checkov:skip=CKV_AWS_356:ecr:GetAuthorizationToken does not support resource-level permissions.
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "PullTheServiceImageOnly"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = [var.ecr_repository_arn]
  }

  statement {
    sid       = "WriteTheServiceLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${var.log_group_arn}:*"]
  }

  statement {
    sid       = "ReadTheAppSecrets"
    actions   = ["ssm:GetParameters"]
    resources = [local.app_parameters_arn]
  }

  statement {
    sid       = "DecryptTheAppSecretsViaSsm"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["ssm.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-log-secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# ---------------------------------------------------------------- task role

resource "aws_iam_role" "task" {
  name               = "${var.name}-task"
  description        = "demo-app itself: ECS Exec channels and session logging only"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "task" {
  statement {
    sid = "EcsExecChannels"
    #checkov:skip=CKV_AWS_356:ssmmessages actions do not support resource-level permissions; they only open the ECS Exec session channels of this task.
    actions = [
      "ssmmessages:CreateControlChannel",
      "ssmmessages:CreateDataChannel",
      "ssmmessages:OpenControlChannel",
      "ssmmessages:OpenDataChannel",
    ]
    resources = ["*"]
  }

  statement {
    sid = "EcsExecFindsItsLogGroup"
    #checkov:skip=CKV_AWS_356:logs:DescribeLogGroups does not support resource-level permissions; the SSM agent calls it before logging a session.
    actions   = ["logs:DescribeLogGroups"]
    resources = ["*"]
  }

  statement {
    sid       = "EcsExecWritesSessionLogs"
    actions   = ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"]
    resources = [var.exec_log_group_arn, "${var.exec_log_group_arn}:*"]
  }

  statement {
    sid       = "EcsExecSessionEncryption"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "ecs-exec"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

# --------------------------------------------------------------- agent role

# Two callers: AWS DevOps Agent itself (the aidevops service principal, only
# for Agent Spaces of this account: AWS's confused-deputy conditions), and
# the principals named in agent_trusted_principal_arns (people running
# `devops-agent-demo aws investigate` with read-only credentials).
data "aws_iam_policy_document" "agent_assume" {
  statement {
    sid     = "DevOpsAgentService"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["aidevops.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:aidevops:${local.region}:${local.account}:agentspace/*"]
    }
  }

  statement {
    sid     = "ReadOnlyInvestigators"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = var.agent_trusted_principal_arns
    }
  }
}

resource "aws_iam_role" "agent" {
  name                 = "${var.name}-devops-agent"
  description          = "Read-only view of ${var.name} for the DevOps agent / investigator, plus the alarm queue"
  assume_role_policy   = data.aws_iam_policy_document.agent_assume.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "agent" {
  statement {
    sid = "DescribeWithoutResourceLevelPermissions"
    #checkov:skip=CKV_AWS_356:These Describe/List/Get actions do not support resource-level permissions (ECS task definitions, CloudWatch metric data, ELB and EC2 describes); all are read-only.
    actions = [
      "ecs:DescribeTaskDefinition",
      "ecs:ListTaskDefinitions",
      "cloudwatch:GetMetricData",
      "cloudwatch:GetMetricStatistics",
      "cloudwatch:ListMetrics",
      "cloudwatch:DescribeAlarmsForMetric",
      "logs:DescribeLogGroups",
      "logs:GetQueryResults",
      "logs:StopQuery",
      "logs:DescribeQueries",
      "elasticloadbalancing:DescribeLoadBalancers",
      "elasticloadbalancing:DescribeTargetGroups",
      "elasticloadbalancing:DescribeTargetHealth",
      "elasticloadbalancing:DescribeListeners",
      "elasticloadbalancing:DescribeRules",
      "elasticloadbalancing:DescribeLoadBalancerAttributes",
      "elasticloadbalancing:DescribeTargetGroupAttributes",
      "ec2:DescribeVpcs",
      "ec2:DescribeSubnets",
      "ec2:DescribeSecurityGroups",
      "ec2:DescribeSecurityGroupRules",
      "ec2:DescribeNetworkInterfaces",
      "ec2:DescribeNatGateways",
      "ec2:DescribeRouteTables",
    ]
    resources = ["*"]
  }

  statement {
    sid     = "EcsClusterAndService"
    actions = ["ecs:DescribeClusters", "ecs:DescribeServices", "ecs:ListServices"]
    resources = [
      local.cluster_arn,
      local.service_arn,
    ]
  }

  statement {
    sid       = "EcsTasksOfThisCluster"
    actions   = ["ecs:ListTasks", "ecs:DescribeTasks"]
    resources = ["*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [local.cluster_arn]
    }
  }

  statement {
    sid       = "ThisEnvironmentsAlarms"
    actions   = ["cloudwatch:DescribeAlarms", "cloudwatch:DescribeAlarmHistory"]
    resources = ["${var.alarm_arn_prefix}*"]
  }

  statement {
    sid = "ThisEnvironmentsLogs"
    actions = [
      "logs:DescribeLogStreams",
      "logs:GetLogEvents",
      "logs:FilterLogEvents",
      "logs:StartQuery",
      "logs:DescribeMetricFilters",
    ]
    resources = [local.log_groups_arn, "${local.log_groups_arn}:*"]
  }

  statement {
    sid       = "TheServiceImages"
    actions   = ["ecr:DescribeRepositories", "ecr:DescribeImages", "ecr:ListImages", "ecr:DescribeImageScanFindings"]
    resources = [var.ecr_repository_arn]
  }

  statement {
    sid       = "DeploymentRecords"
    actions   = ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParameterHistory", "ssm:GetParametersByPath"]
    resources = [local.deployments_arn]
  }

  statement {
    sid       = "ConsumeTheAlarmQueue"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
    resources = [var.alarm_queue_arn]
  }

  statement {
    sid       = "DecryptAlarmMessages"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["sqs.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "agent" {
  name   = "read-only-investigation"
  role   = aws_iam_role.agent.id
  policy = data.aws_iam_policy_document.agent.json
}

# -------------------------------------------------------------- deploy role

# The GitHub OIDC provider is account-wide and created once by the bootstrap
# stack (infra/terraform/bootstrap).
data "aws_iam_openid_connect_provider" "github" {
  url = "https://token.actions.githubusercontent.com"
}

data "aws_iam_policy_document" "deploy_assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [data.aws_iam_openid_connect_provider.github.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:sub"
      values   = [local.github_oidc_subject]
    }
  }
}

resource "aws_iam_role" "deploy" {
  name                 = "${var.name}-github-deploy"
  description          = "GitHub Actions deploy of ${var.github_repository}@${var.github_deploy_branch}"
  assume_role_policy   = data.aws_iam_policy_document.deploy_assume.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "deploy" {
  statement {
    sid = "NoResourceLevelPermissions"
    #checkov:skip=CKV_AWS_356:ecr:GetAuthorizationToken and ecs task-definition register/describe do not support resource-level permissions.
    actions = [
      "ecr:GetAuthorizationToken",
      "ecs:DescribeTaskDefinition",
      "ecs:RegisterTaskDefinition",
    ]
    resources = ["*"]
  }

  statement {
    sid = "PushToTheServiceRepository"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:InitiateLayerUpload",
      "ecr:UploadLayerPart",
      "ecr:CompleteLayerUpload",
      "ecr:PutImage",
      "ecr:BatchGetImage",
      "ecr:DescribeImages",
    ]
    resources = [var.ecr_repository_arn]
  }

  statement {
    sid       = "UpdateThisServiceOnly"
    actions   = ["ecs:UpdateService", "ecs:DescribeServices"]
    resources = [local.service_arn]
  }

  statement {
    sid       = "PassOnlyTheServiceRolesToEcs"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.execution.arn, aws_iam_role.task.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }

  statement {
    sid       = "RecordDeployments"
    actions   = ["ssm:GetParameter", "ssm:PutParameter"]
    resources = [local.deployments_arn]
  }
}

resource "aws_iam_role_policy" "deploy" {
  name   = "push-and-deploy"
  role   = aws_iam_role.deploy.id
  policy = data.aws_iam_policy_document.deploy.json
}
