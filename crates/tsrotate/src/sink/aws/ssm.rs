//! AWS Systems Manager Parameter Store parameters, written as `SecureString`s.

use std::fmt;

use serde::Deserialize;
use serde_json::json;

use super::AwsCredentials;
use super::client::{Client, classify, is_code};
use crate::key::Secret;
use crate::sink::{BoxFuture, Error, Expect, Sink, Snapshot, Version};

/// An SSM Parameter Store parameter, written as a `SecureString`.
pub struct SsmSink {
    client: Client,
    parameter: String,
    name: String,
}

impl fmt::Debug for SsmSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SsmSink")
            .field("sink", &self.name)
            .field("endpoint", &self.client.url.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetParameterOutput {
    parameter: Parameter,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Parameter {
    value: Secret,
    version: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutParameterOutput {
    version: i64,
}

impl SsmSink {
    /// Let each request to the service take at most `timeout` (instead of
    /// the default of 30 seconds): a write that gets no answer in time fails as the
    /// service being unavailable, and the rotation stops before revocation.
    #[must_use]
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.client.timeout = timeout;
        self
    }

    /// A sink for the parameter `name` in `region`. `endpoint_url` replaces
    /// `https://ssm.{region}.amazonaws.com`.
    pub fn new(
        name: &str,
        region: &str,
        endpoint_url: Option<String>,
        credentials: AwsCredentials,
    ) -> Result<Self, Error> {
        let sink = format!("aws-ssm {name}");
        if name.is_empty() {
            return Err(Error::config(sink, "the parameter name is empty"));
        }
        let client = Client::new(&sink, "ssm", "AmazonSSM", region, endpoint_url, credentials)?;
        Ok(Self {
            client,
            parameter: name.to_owned(),
            name: sink,
        })
    }

    async fn fetch(&self) -> Result<Option<Parameter>, Error> {
        let body = json!({ "Name": self.parameter, "WithDecryption": true });
        match self
            .client
            .call::<GetParameterOutput>(&self.name, "GetParameter", &body, &[])
            .await
        {
            Ok(out) => Ok(Some(out.parameter)),
            Err(f) if is_code(&f, "ParameterNotFound") => Ok(None),
            Err(f) => Err(classify(&self.name, "GetParameter", f)),
        }
    }

    async fn write_value(&self, value: &Secret, expect: &Expect) -> Result<Option<Version>, Error> {
        let current = self.fetch().await?;
        if let Some(current) = &current
            && &current.value == value
        {
            // Already there: a repeated write after a crash, or nothing to change.
            return Ok(Some(Version(current.version.to_string())));
        }
        let conflict = || Error::conflict(&self.name);
        match (expect, &current) {
            (Expect::Absent, Some(_)) | (Expect::Version(_), None) => return Err(conflict()),
            (Expect::Version(v), Some(c)) if c.version.to_string() != v.0 => {
                return Err(conflict());
            }
            _ => {}
        }
        let overwrite = current.is_some();
        let body = json!({
            "Name": self.parameter,
            "Value": value.expose_secret(),
            "Type": "SecureString",
            "Overwrite": overwrite,
        });
        let out = self
            .client
            .call::<PutParameterOutput>(&self.name, "PutParameter", &body, &[value.expose_secret()])
            .await
            .map_err(|f| {
                // Created by someone else since we found it absent.
                if is_code(&f, "ParameterAlreadyExists") {
                    conflict()
                } else {
                    classify(&self.name, "PutParameter", f)
                }
            })?;
        Ok(Some(Version(out.version.to_string())))
    }
}

impl Sink for SsmSink {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn read(&self) -> BoxFuture<'_, Result<Snapshot, Error>> {
        Box::pin(async move {
            Ok(match self.fetch().await? {
                Some(p) => Snapshot {
                    value: Some(p.value),
                    version: Some(Version(p.version.to_string())),
                },
                None => Snapshot {
                    value: None,
                    version: None,
                },
            })
        })
    }

    fn write<'a>(
        &'a self,
        value: &'a Secret,
        expect: &'a Expect,
    ) -> BoxFuture<'a, Result<Option<Version>, Error>> {
        Box::pin(self.write_value(value, expect))
    }
}
