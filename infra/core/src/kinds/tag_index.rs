//! Tags of many resources from one listing: the Resource Groups Tagging API's GetResources,
//! filtered on this stack and env, answers for every tagged resource of the env at once
//! (up to 100 per page), where each kind's own API needs a ListTagsForResource per resource.
//!
//! A resource missing from the listing is read the per-resource way: its ownership tags may
//! have been removed out of band, or the service (or the emulator) may not report it here.
//! So the index can only save calls, never hide a tag change.

use std::collections::BTreeMap;

use crate::aws::{Aws, AwsError, aws_error};
use crate::model::{TAG_ENV, TAG_STACK, Target};

pub type Tags = BTreeMap<String, String>;

#[derive(Debug, Default)]
pub struct TagIndex {
    by_arn: BTreeMap<String, Tags>,
}

impl TagIndex {
    /// Lists every resource tagged for `target`'s stack and env, with all its tags.
    pub async fn load(aws: &Aws, target: &Target) -> Result<TagIndex, AwsError> {
        let filter = |key: &str, value: &str| {
            aws_sdk_resourcegroupstagging::types::TagFilter::builder()
                .key(key)
                .values(value)
                .build()
        };
        let mut by_arn = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let page = aws
                .tagging
                .get_resources()
                .tag_filters(filter(TAG_STACK, &target.stack))
                .tag_filters(filter(TAG_ENV, &target.env))
                // AWS recommends this over TagsPerPage. moto also cuts pages at 100 tags
                // (about 20 of our resources) unless TagsPerPage is sent.
                .resources_per_page(100)
                .set_pagination_token(token.take())
                .send()
                .await
                .map_err(|e| aws_error("GetResources", e))?;
            for mapping in page.resource_tag_mapping_list() {
                let Some(arn) = mapping.resource_arn() else {
                    continue;
                };
                let tags: Tags = mapping
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect();
                // Some services are answered without the filters applied (moto's Glue):
                // only what really carries this stack's tags is kept.
                if tags.get(TAG_STACK) == Some(&target.stack)
                    && tags.get(TAG_ENV) == Some(&target.env)
                {
                    by_arn.insert(arn.to_string(), tags);
                }
            }
            match page.pagination_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => break,
            }
        }
        Ok(TagIndex { by_arn })
    }

    /// The tags of `arn`, if the listing had it.
    pub fn get(&self, arn: &str) -> Option<&Tags> {
        self.by_arn.get(arn)
    }

    /// Every listed resource: ARN and tags.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tags)> {
        self.by_arn.iter().map(|(arn, tags)| (arn.as_str(), tags))
    }
}
