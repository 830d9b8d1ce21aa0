//! LinkedIn creatives and their content, without any I/O: the paths and query strings of the
//! creatives, posts and images APIs, and the parsing of their answers into rows of the raw
//! creatives table. A text ad carries its copy; a sponsored post refers to a post (its
//! commentary, call to action and landing page) whose media refers to an image (its download
//! URL). See `api-notes.md` ("Creatives").

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::analytics::encode;

/// Creatives per page (the API's maximum).
pub const PAGE_SIZE: u32 = 100;

/// `/adAccounts/{account}/creatives?...`, relative to the API base; `page_token` continues
/// a listing.
pub fn creatives_path(account: &str, page_token: Option<&str>) -> String {
    let mut path = format!("/adAccounts/{account}/creatives?q=criteria&pageSize={PAGE_SIZE}");
    if let Some(token) = page_token {
        path.push_str("&pageToken=");
        path.push_str(&encode(token));
    }
    path
}

/// `/posts/{urn}` with the URN encoded as one path segment.
pub fn post_path(urn: &str) -> String {
    format!("/posts/{}", encode(urn))
}

/// `/images/{urn}`.
pub fn image_path(urn: &str) -> String {
    format!("/images/{}", encode(urn))
}

/// What a creative shows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Content {
    TextAd {
        headline: String,
        description: String,
    },
    /// A sponsored post: `urn:li:share:...` or `urn:li:ugcPost:...`.
    Post(String),
    /// A kind of content this collector does not read (e.g. a conversation ad).
    Other,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Creative {
    pub id: String,
    pub campaign_id: String,
    pub status: String,
    pub content: Content,
    pub leadgen_call_to_action: Option<String>,
}

/// One page of the creatives listing.
#[derive(Clone, Debug, PartialEq)]
pub struct CreativesPage {
    pub creatives: Vec<Creative>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    #[error("the answer has no `elements` array")]
    NoElements,
    #[error("creative {0}: no `id`")]
    NoId(usize),
}

/// The id at the end of a URN: `urn:li:sponsoredCreative:123` -> `123`.
pub fn urn_id(urn: &str) -> &str {
    urn.rsplit(':').next().unwrap_or(urn)
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

pub fn parse_creatives(answer: &Value) -> Result<CreativesPage, ParseError> {
    let elements = answer["elements"]
        .as_array()
        .ok_or(ParseError::NoElements)?;
    let mut creatives = Vec::new();
    for (i, element) in elements.iter().enumerate() {
        let id = element["id"].as_str().ok_or(ParseError::NoId(i))?;
        let content = &element["content"];
        let content = if let Some(ad) = content.get("textAd") {
            Content::TextAd {
                headline: text(&ad["headline"]),
                description: text(&ad["description"]),
            }
        } else if let Some(reference) = content["reference"].as_str() {
            Content::Post(reference.to_string())
        } else {
            Content::Other
        };
        creatives.push(Creative {
            id: urn_id(id).to_string(),
            campaign_id: urn_id(element["campaign"].as_str().unwrap_or_default()).to_string(),
            status: text(&element["intendedStatus"]),
            content,
            leadgen_call_to_action: element["leadgenCallToAction"]["label"]
                .as_str()
                .map(str::to_string),
        });
    }
    let next_page_token = answer["metadata"]["nextPageToken"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    Ok(CreativesPage {
        creatives,
        next_page_token,
    })
}

/// What a sponsored post says.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PostContent {
    pub commentary: String,
    /// The title of the post's article or media, when it has one: its headline.
    pub title: String,
    pub call_to_action: String,
    pub landing_page: String,
    /// `urn:li:image:...` when the post shows an image.
    pub image: Option<String>,
}

pub fn parse_post(answer: &Value) -> PostContent {
    let content = &answer["content"];
    let media_id = content["media"]["id"].as_str();
    PostContent {
        commentary: text(&answer["commentary"]),
        title: content["media"]["title"]
            .as_str()
            .or_else(|| content["article"]["title"].as_str())
            .unwrap_or_default()
            .to_string(),
        call_to_action: text(&answer["contentCallToActionLabel"]),
        landing_page: answer["contentLandingPage"]
            .as_str()
            .or_else(|| content["article"]["source"].as_str())
            .unwrap_or_default()
            .to_string(),
        image: media_id
            .filter(|id| id.starts_with("urn:li:image:"))
            .map(str::to_string),
    }
}

/// The image's download URL.
pub fn parse_image(answer: &Value) -> Option<String> {
    answer["downloadUrl"].as_str().map(str::to_string)
}

/// One line of `raw/linkedin/creatives/dt=.../<run-id>.ndjson`: the raw table's columns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreativeRow {
    pub creative_id: String,
    pub account_id: String,
    pub campaign_id: String,
    pub status: String,
    pub headline: String,
    pub description: String,
    pub call_to_action: String,
    pub landing_page: String,
    pub image_url: String,
    pub targeting_summary: String,
    pub run_id: String,
}

impl CreativeRow {
    /// The row of `creative`, with its post and image resolved when it is a sponsored post.
    pub fn of(
        account: &str,
        creative: &Creative,
        post: Option<&PostContent>,
        image_url: Option<&str>,
        run_id: &str,
    ) -> CreativeRow {
        let mut row = CreativeRow {
            creative_id: creative.id.clone(),
            account_id: account.to_string(),
            campaign_id: creative.campaign_id.clone(),
            status: creative.status.clone(),
            call_to_action: creative.leadgen_call_to_action.clone().unwrap_or_default(),
            run_id: run_id.to_string(),
            ..CreativeRow::default()
        };
        match (&creative.content, post) {
            (
                Content::TextAd {
                    headline,
                    description,
                },
                _,
            ) => {
                row.headline = headline.clone();
                row.description = description.clone();
            }
            (Content::Post(_), Some(post)) => {
                row.headline = post.title.clone();
                row.description = post.commentary.clone();
                if !post.call_to_action.is_empty() {
                    row.call_to_action = post.call_to_action.clone();
                }
                row.landing_page = post.landing_page.clone();
                row.image_url = image_url.unwrap_or_default().to_string();
            }
            _ => {}
        }
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> Value {
        let path = format!(
            "{}/../assets/samples/linkedin/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    #[test]
    fn paths_encode_urns_and_page_tokens() {
        assert_eq!(
            creatives_path("500000001", None),
            "/adAccounts/500000001/creatives?q=criteria&pageSize=100"
        );
        assert_eq!(
            creatives_path("500000001", Some("abc==")),
            "/adAccounts/500000001/creatives?q=criteria&pageSize=100&pageToken=abc%3D%3D"
        );
        assert_eq!(
            post_path("urn:li:share:7000000000000000001"),
            "/posts/urn%3Ali%3Ashare%3A7000000000000000001"
        );
        assert_eq!(
            image_path("urn:li:image:C4E10AQ"),
            "/images/urn%3Ali%3Aimage%3AC4E10AQ"
        );
    }

    #[test]
    fn a_page_of_creatives_and_its_cursor() {
        let page = parse_creatives(&sample("creatives-page-1.json")).unwrap();
        assert_eq!(page.next_page_token.as_deref(), Some("cursor-2"));
        assert_eq!(page.creatives.len(), 2);
        let text_ad = &page.creatives[0];
        assert_eq!(
            (text_ad.id.as_str(), text_ad.campaign_id.as_str()),
            ("111", "9001")
        );
        assert_eq!(
            text_ad.content,
            Content::TextAd {
                headline: "Ship ads 2x faster".into(),
                description: "Free guide for B2B marketers".into()
            }
        );
        assert_eq!(
            page.creatives[1].content,
            Content::Post("urn:li:share:7000000000000000001".into())
        );
        let last = parse_creatives(&sample("creatives-page-2.json")).unwrap();
        assert_eq!(last.next_page_token, None);
        assert_eq!(last.creatives[0].status, "PAUSED");
    }

    #[test]
    fn a_sponsored_post_resolves_to_its_text_landing_page_and_image() {
        let page = parse_creatives(&sample("creatives-page-1.json")).unwrap();
        let post = parse_post(&sample("post.json"));
        assert_eq!(
            post.image.as_deref(),
            Some("urn:li:image:C4E10AQFakeImage1")
        );
        let image = parse_image(&sample("image.json"));
        let row = CreativeRow::of(
            "500000001",
            &page.creatives[1],
            Some(&post),
            image.as_deref(),
            "20260131T060000Z-run",
        );
        assert_eq!(row.creative_id, "222");
        assert_eq!(row.headline, "The 2026 B2B benchmark report");
        assert!(row.description.starts_with("Is your funnel leaking?"));
        assert_eq!(row.call_to_action, "DOWNLOAD");
        assert_eq!(row.landing_page, "https://example.com/benchmark");
        assert_eq!(
            row.image_url,
            "https://media.licdn.com/dms/image/fake/benchmark.png"
        );
        let text_row = CreativeRow::of("500000001", &page.creatives[0], None, None, "r");
        assert_eq!(text_row.headline, "Ship ads 2x faster");
        assert_eq!(text_row.call_to_action, "LEARN_MORE");
    }
}
