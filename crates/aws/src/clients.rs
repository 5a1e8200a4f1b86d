//! One SDK configuration, one client per service. The HTTP client is built
//! here with rustls on *ring* (not the SDK's default aws-lc), which keeps
//! CMake and a C crypto library out of the build; credentials come from the
//! default chain (environment, profile, ECS task role, IMDS).

use aws_config::{BehaviorVersion, Region};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

use crate::AwsConfig;

/// Clients for every service the investigator and the worker call.
#[derive(Debug, Clone)]
pub struct Clients {
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub sns: aws_sdk_sns::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl Clients {
    /// Loads credentials from the default chain and builds the clients (no
    /// request is sent).
    pub async fn new(cfg: &AwsConfig) -> Clients {
        Clients::with_credentials(cfg, None).await
    }

    /// Same, with fixed credentials instead of the default chain (tests
    /// against moto, which accepts any).
    pub async fn with_credentials(
        cfg: &AwsConfig,
        credentials: Option<aws_sdk_sqs::config::Credentials>,
    ) -> Clients {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .http_client(http);
        if let Some(c) = credentials {
            loader = loader.credentials_provider(c);
        }
        if let Some(url) = &cfg.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        let sdk = loader.load().await;
        // moto (and other S3 look-alikes) serve buckets by path, not by host.
        let s3 = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(cfg.endpoint_url.is_some())
            .build();
        Clients {
            logs: aws_sdk_cloudwatchlogs::Client::new(&sdk),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
            ssm: aws_sdk_ssm::Client::new(&sdk),
            ecs: aws_sdk_ecs::Client::new(&sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&sdk),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            s3: aws_sdk_s3::Client::from_conf(s3),
            sns: aws_sdk_sns::Client::new(&sdk),
            secrets: aws_sdk_secretsmanager::Client::new(&sdk),
        }
    }
}
