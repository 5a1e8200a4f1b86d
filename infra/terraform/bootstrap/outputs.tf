output "state_bucket" {
  description = "Pass to `terraform init -backend-config=bucket=...` and set as the GitHub variable TF_STATE_BUCKET."
  value       = aws_s3_bucket.state.bucket
}

output "terraform_plan_role_arn" {
  description = "GitHub variable AWS_TERRAFORM_PLAN_ROLE_ARN."
  value       = aws_iam_role.terraform_plan.arn
}

output "terraform_pr_plan_role_arn" {
  description = "GitHub variable AWS_TERRAFORM_PR_PLAN_ROLE_ARN (pull-request plans; cannot save plans)."
  value       = aws_iam_role.terraform_pr_plan.arn
}

output "terraform_apply_role_arn" {
  description = "GitHub variable AWS_TERRAFORM_APPLY_ROLE_ARN."
  value       = aws_iam_role.terraform_apply.arn
}

output "github_oidc_provider_arn" {
  value = aws_iam_openid_connect_provider.github.arn
}
