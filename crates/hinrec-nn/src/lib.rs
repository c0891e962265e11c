//! candle layers and training pieces for hinrec models.
//!
//! - [`init`]: seeded initialisation (candle's CPU generator cannot be
//!   seeded, so every random value comes from our ChaCha8 stream);
//! - [`attention`]: REDA's [`attention::KeyValueMemory`] and
//!   [`attention::WeightAttention`];
//! - [`interaction`]: REDA's pair-wise interaction layer as one fused op;
//! - [`bias`]: a row-broadcast bias and activation as one op;
//! - [`slot_ops`]: the fused ops over neighbour slots behind co-attention
//!   (pooling of `FA G^T`, weighted and softmax-weighted row sums), each
//!   with its own backward and gradient check;
//! - [`layers`]: [`layers::Linear`], [`layers::Mlp`], masked
//!   [`layers::co_attention`] and the translation score;
//! - [`lstm`]: a masked (bi)directional LSTM whose hidden states are
//!   averaged, one fused op with its own backward (HHFAN's intra-type
//!   aggregator);
//! - [`bag`]: an embedding bag (weighted sums of table rows) as one op
//!   with its own backward (DURation's history towers);
//! - [`loss`]: hinge, BPR, sigmoid cross-entropy with logits, L2;
//! - [`alignment`]: DURation's RBF distributional variance (alignment) and
//!   row-covariance (topology) losses;
//! - [`alignment_rows`]: the same two losses on plain `f32` rows, value
//!   and gradient in one call (symmetric kernel tiles, a vectorised
//!   exponential), for a step computed outside candle;
//! - [`normalize`]: row-wise L2 normalisation as one op with its gradient;
//! - [`dense_mlp`]: an MLP (and its normalisation) over plain `f32` rows
//!   with a fused backward, outside candle, for towers of small layers;
//! - [`optim`]: [`optim::Adam`] for dense parameters (moments exposed, so
//!   they are saved and a resumed run continues exactly);
//! - [`embedding`]'s [`embedding::EmbeddingTable`] rows live outside candle
//!   and are updated row-wise: a batch gathers its unique rows into a small
//!   leaf tensor and only those rows see the gradient and the optimizer;
//! - [`checkpoint`]: named tensors to safetensors, written atomically;
//! - [`gradcheck`]: finite-difference checks used by the tests of every layer.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use hinrec_nn::{init::Rng, layers::Mlp};
//!
//! let mut rng = Rng::new(7);
//! let mlp = Mlp::new(&mut rng, &[4, 8, 2], DType::F32, &Device::Cpu)?;
//! let x = Tensor::ones((3, 4), DType::F32, &Device::Cpu)?;
//! assert_eq!(mlp.forward(&x)?.dims(), &[3, 2]);
//! # Ok::<(), candle_core::Error>(())
//! ```

pub mod alignment;
pub mod alignment_rows;
pub mod attention;
pub mod bag;
pub mod bias;
pub mod checkpoint;
pub mod dense_mlp;
pub mod embedding;
pub mod gradcheck;
pub mod init;
pub mod interaction;
pub mod layers;
pub mod loss;
pub mod lstm;
pub mod normalize;
pub mod optim;
pub mod slot_ops;
pub mod trainer;
