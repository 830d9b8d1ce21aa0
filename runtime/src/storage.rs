//! The handlers' access to the data bucket: list a prefix (every page), get and put objects.
//! Errors name the operation and the key; a missing object is `Ok(None)`, not an error.

use aws_config::SdkConfig;
use aws_sdk_s3::operation::get_object::GetObjectError;

#[derive(Debug, thiserror::Error)]
#[error("{operation} s3://{bucket}/{key}: {message}")]
pub struct StorageError {
    pub operation: &'static str,
    pub bucket: String,
    pub key: String,
    pub message: String,
}

/// The data bucket.
#[derive(Clone, Debug)]
pub struct Storage {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
}

/// An S3 client for `sdk`; path-style addressing when an endpoint is configured (a local
/// emulator has no per-bucket host names).
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .build(),
    )
}

impl Storage {
    pub fn new(client: aws_sdk_s3::Client, bucket: &str) -> Storage {
        Storage {
            client,
            bucket: bucket.to_string(),
        }
    }

    fn error<E: std::error::Error + 'static>(
        &self,
        operation: &'static str,
        key: &str,
    ) -> impl FnOnce(E) -> StorageError {
        let (bucket, key) = (self.bucket.clone(), key.to_string());
        move |e| StorageError {
            operation,
            bucket,
            key,
            message: aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
        }
    }

    /// The keys under `prefix`, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(self.error("ListObjectsV2", prefix))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// The object's bytes, or `None` when there is no such key.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if matches!(e.as_service_error(), Some(GetObjectError::NoSuchKey(_))) => {
                return Ok(None);
            }
            Err(e) => return Err(self.error("GetObject", key)(e)),
        };
        let body = out
            .body
            .collect()
            .await
            .map_err(self.error("GetObject", key))?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    pub async fn put(
        &self,
        key: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(), StorageError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(body.into())
            .send()
            .await
            .map_err(self.error("PutObject", key))?;
        Ok(())
    }
}
