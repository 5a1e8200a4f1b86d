# Run once per AWS account, by an administrator, before anything else:
#
#   terraform -chdir=infra/terraform/bootstrap init
#   terraform -chdir=infra/terraform/bootstrap apply -var github_repository=owner/name
#
# It creates what every environment's pipeline needs and cannot create for
# itself: the encrypted, versioned state bucket (S3 native locking, no
# DynamoDB table), the GitHub OIDC provider, and the two roles the Terraform
# workflow assumes (plan: read-only, from pull requests and main; apply: from
# the `dev` GitHub environment only). Its own state stays local: keep
# terraform.tfstate from this directory somewhere safe (it holds no secrets).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account     = data.aws_caller_identity.current.account_id
  partition   = data.aws_partition.current.partition
  bucket_name = coalesce(var.state_bucket_name, "${var.project}-tfstate-${local.account}")
  oidc_host   = "token.actions.githubusercontent.com"
}

# ---------------------------------------------------------------- state key

data "aws_iam_policy_document" "state_key" {
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
}

resource "aws_kms_key" "state" {
  description             = "${var.project}: Terraform state and saved plans"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.state_key.json
}

resource "aws_kms_alias" "state" {
  name          = "alias/${var.project}-tfstate"
  target_key_id = aws_kms_key.state.key_id
}

# ------------------------------------------------------------- state bucket

resource "aws_s3_bucket" "state" {
  #checkov:skip=CKV_AWS_18:Server access logs would need a second bucket; state access is already attributable through CloudTrail (management and optional data events).
  #checkov:skip=CKV_AWS_144:Cross-region replication doubles cost for state that versioning already protects and that can be re-imported; enable for production.
  #checkov:skip=CKV2_AWS_62:Nothing consumes event notifications for the state bucket.
  bucket = local.bucket_name

  # Losing state orphans every resource: refuse to destroy the bucket.
  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_s3_bucket_versioning" "state" {
  bucket = aws_s3_bucket.state.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "state" {
  bucket = aws_s3_bucket.state.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.state.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "state" {
  bucket                  = aws_s3_bucket.state.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "state" {
  bucket = aws_s3_bucket.state.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "state" {
  bucket = aws_s3_bucket.state.id

  rule {
    id     = "old-state-versions"
    status = "Enabled"
    filter {}

    noncurrent_version_expiration {
      noncurrent_days = 90
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  # Saved plans (written by the plan job, applied by the apply job) contain
  # sensitive values: keep them only as long as an apply can take.
  rule {
    id     = "saved-plans"
    status = "Enabled"
    filter {
      prefix = "plans/"
    }

    expiration {
      days = 7
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }
}

data "aws_iam_policy_document" "state_bucket" {
  statement {
    sid       = "DenyPlainTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.state.arn, "${aws_s3_bucket.state.arn}/*"]
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

resource "aws_s3_bucket_policy" "state" {
  bucket = aws_s3_bucket.state.id
  policy = data.aws_iam_policy_document.state_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.state]
}

# ---------------------------------------------------------------- GitHub OIDC

resource "aws_iam_openid_connect_provider" "github" {
  url            = "https://${local.oidc_host}"
  client_id_list = ["sts.amazonaws.com"]
  # IAM no longer uses the thumbprint for this provider (it trusts GitHub's
  # certificate chain), but the API still requires a value.
  thumbprint_list = ["6938fd4d98bab03faadb97b34396831e3780aea1"]
}

locals {
  repo = var.github_repository
}

# Plan on main: read-only plus the state, and it saves the plan that the
# apply job applies. Trusted by pushes to main only: a pull request cannot
# assume it, so it cannot overwrite a saved plan.
data "aws_iam_policy_document" "plan_assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.github.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:sub"
      values   = ["repo:${local.repo}:ref:refs/heads/main"]
    }
  }
}

# Plan on pull requests: read-only plus reading the state and taking the
# lock; it may write nothing under plans/.
data "aws_iam_policy_document" "pr_plan_assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.github.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:sub"
      values   = ["repo:${local.repo}:pull_request"]
    }
  }
}

resource "aws_iam_role" "terraform_pr_plan" {
  name                 = "${var.project}-terraform-pr-plan"
  description          = "GitHub Actions: terraform plan of a pull request (read-only, saves nothing)"
  assume_role_policy   = data.aws_iam_policy_document.pr_plan_assume.json
  max_session_duration = 3600
}

resource "aws_iam_role_policy_attachment" "pr_plan_read_only" {
  role       = aws_iam_role.terraform_pr_plan.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/ReadOnlyAccess"
}

data "aws_iam_policy_document" "pr_plan_state" {
  statement {
    sid       = "ReadState"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.state.arn}/*"]
  }

  statement {
    sid       = "TakeTheLock"
    actions   = ["s3:PutObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.state.arn}/*.tflock"]
  }

  statement {
    sid       = "ListState"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.state.arn]
  }

  statement {
    sid       = "StateEncryption"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.state.arn]
  }
}

resource "aws_iam_role_policy" "pr_plan_state" {
  name   = "terraform-state"
  role   = aws_iam_role.terraform_pr_plan.id
  policy = data.aws_iam_policy_document.pr_plan_state.json
}

resource "aws_iam_role" "terraform_plan" {
  name                 = "${var.project}-terraform-plan"
  description          = "GitHub Actions: terraform plan on main (read-only; saves the plan to apply)"
  assume_role_policy   = data.aws_iam_policy_document.plan_assume.json
  max_session_duration = 3600
}

resource "aws_iam_role_policy_attachment" "plan_read_only" {
  role       = aws_iam_role.terraform_plan.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/ReadOnlyAccess"
}

data "aws_iam_policy_document" "plan_state" {
  statement {
    sid       = "ReadState"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.state.arn}/*"]
  }

  # Plan may take the lock and save plans, never write the state itself.
  statement {
    sid       = "TakeTheLockAndSavePlans"
    actions   = ["s3:PutObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.state.arn}/*.tflock", "${aws_s3_bucket.state.arn}/plans/*"]
  }

  statement {
    sid       = "ListState"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.state.arn]
  }

  statement {
    sid       = "StateEncryption"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.state.arn]
  }

  # Refreshing SecureString parameters decrypts them; only through SSM.
  statement {
    sid       = "RefreshSecureStringParameters"
    actions   = ["kms:Decrypt"]
    resources = ["arn:${local.partition}:kms:${data.aws_region.current.region}:${local.account}:key/*"]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["ssm.${data.aws_region.current.region}.amazonaws.com"]
    }
    condition {
      test     = "ForAnyValue:StringLike"
      variable = "kms:ResourceAliases"
      values   = ["alias/${var.project}-*"]
    }
  }
}

resource "aws_iam_role_policy" "plan_state" {
  name   = "terraform-state"
  role   = aws_iam_role.terraform_plan.id
  policy = data.aws_iam_policy_document.plan_state.json
}

# Apply: only jobs running in the protected `dev` GitHub environment (required
# reviewers, deployment branch main).
data "aws_iam_policy_document" "apply_assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.github.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:sub"
      values   = ["repo:${local.repo}:environment:${var.apply_environment}"]
    }
  }
}

resource "aws_iam_role" "terraform_apply" {
  name                 = "${var.project}-terraform-apply"
  description          = "GitHub Actions: terraform apply of a reviewed plan, environment ${var.apply_environment} only"
  assume_role_policy   = data.aws_iam_policy_document.apply_assume.json
  max_session_duration = 3600
}

resource "aws_iam_role_policy_attachment" "apply_admin" {
  #checkov:skip=CKV_AWS_274:Applying this stack creates VPCs, IAM roles, KMS keys and policies, which needs administrator rights; the role is assumable only from the protected GitHub environment (reviewers + main), via OIDC.
  role       = aws_iam_role.terraform_apply.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AdministratorAccess"
}
