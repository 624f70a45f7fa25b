package s3seg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// S3Store defaults.
const (
	DefaultS3Region         = "us-east-1"
	DefaultS3RequestTimeout = 10 * time.Second
	DefaultS3MaxAttempts    = 5
	DefaultS3MaxBackoff     = 5 * time.Second
)

// S3Config configures an S3Store. The comments name the environment
// variables cmd/streamhouse maps onto the fields; this package reads none.
type S3Config struct {
	// Endpoint is the base URL of an S3-compatible service, such as
	// "http://minio:9000" (S3_ENDPOINT). Empty means AWS S3 with the SDK's
	// endpoint resolution for Region.
	Endpoint string
	// Bucket holds the objects (S3_BUCKET). Required.
	Bucket string
	// Region is the signing region (S3_REGION); default "us-east-1".
	Region string
	// PathStyle addresses the bucket as <endpoint>/<bucket>/<key> instead
	// of <bucket>.<endpoint>/<key> (S3_PATH_STYLE; true for MinIO).
	PathStyle bool
	// AccessKeyID and SecretAccessKey are static credentials
	// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY). Both empty means the SDK's
	// default credential chain: environment, shared config and credentials
	// files (AWS_PROFILE), web identity (EKS IRSA), container and EC2
	// instance roles. Setting only one of them is a configuration error.
	AccessKeyID     string
	SecretAccessKey string
	// Prefix is prepended to every key inside the bucket, so several
	// clusters can share one bucket; "" means none. A missing trailing '/'
	// is added. Keys passed to the store and returned by List are relative
	// to it.
	Prefix string
	// RequestTimeout bounds each HTTP attempt, from dialling to the last
	// byte of the response body; default 10s. It must allow the largest
	// object to be transferred.
	RequestTimeout time.Duration
	// MaxAttempts is how many times the SDK retryer tries a request that
	// failed transiently (connection errors, timeouts, 5xx, throttling);
	// default 5. 1 disables retries.
	MaxAttempts int
	// MaxBackoff caps the exponential, jittered delay between attempts
	// (base 50 ms, 1 s for throttling errors); default 5s.
	MaxBackoff time.Duration
}

// S3Store is an ObjectStore on Amazon S3 or an S3-compatible server (MinIO),
// built on aws-sdk-go-v2. It is safe for concurrent use.
//
// Put is a conditional PUT (If-None-Match: *), so an object is never
// overwritten, also by a racing Put. Transient failures are retried by the
// SDK's standard retryer (MaxAttempts, exponential backoff with jitter, no
// client-side retry quota); definite answers (ErrExists, ErrNotFound,
// ErrInvalidRange, ErrAccessDenied, ErrBucketNotFound) are not retried.
// Errors wrap the SDK error with the operation and key, and one of those
// sentinels, or ErrUnreachable, when it applies.
type S3Store struct {
	client       *s3.Client
	creds        aws.CredentialsProvider
	transport    *http.Transport
	maxBackoff   time.Duration
	bucket       string
	prefix       string
	endpoint     string // for messages: the configured URL, or "AWS S3 (<region>)"
	maxAttempts  int
	listPageSize int32 // 0 = the service default (1000); tests set it lower
}

var _ ObjectStore = (*S3Store)(nil)

// NewS3Store builds an S3 client from cfg. It validates the configuration but
// does not contact S3 (an agent must be able to start while S3 is briefly
// down); call Check for that.
func NewS3Store(ctx context.Context, cfg S3Config) (*S3Store, error) {
	cfg, prefix, err := checkS3Config(cfg)
	if err != nil {
		return nil, err
	}
	awsCfg, err := loadAWSConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// The store owns its transport (Close releases its idle connections)
	// and the per-attempt timeout.
	var tr *http.Transport
	if bc, ok := awsCfg.HTTPClient.(*awshttp.BuildableClient); ok {
		tr = bc.GetTransport() // a copy, with the configuration applied
	} else {
		return nil, fmt.Errorf("s3seg: s3 store: unexpected HTTP client %T in the AWS configuration", awsCfg.HTTPClient)
	}
	endpoint := cfg.Endpoint
	if endpoint == "" {
		endpoint = "AWS S3 (region " + cfg.Region + ")"
	}
	return &S3Store{
		client:      newS3Client(awsCfg, cfg, tr),
		creds:       awsCfg.Credentials,
		transport:   tr,
		maxBackoff:  cfg.MaxBackoff,
		bucket:      cfg.Bucket,
		prefix:      prefix,
		endpoint:    endpoint,
		maxAttempts: cfg.MaxAttempts,
	}, nil
}

// checkS3Config validates cfg and fills in the defaults; it also returns
// the normalised key prefix.
func checkS3Config(cfg S3Config) (S3Config, string, error) {
	if cfg.Bucket == "" {
		return cfg, "", errors.New("s3seg: s3 store: no bucket configured (set S3_BUCKET)")
	}
	if strings.Contains(cfg.Bucket, "/") {
		return cfg, "", fmt.Errorf("s3seg: s3 store: bucket name %q contains '/' (S3_BUCKET is a bucket name, not a path; use a prefix for paths)", cfg.Bucket)
	}
	if (cfg.AccessKeyID == "") != (cfg.SecretAccessKey == "") {
		return cfg, "", errors.New("s3seg: s3 store: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither (to use the default AWS credential chain)")
	}
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return cfg, "", fmt.Errorf("s3seg: s3 store: endpoint %q is not a URL like http://minio:9000 or https://s3.example.com (check S3_ENDPOINT)", cfg.Endpoint)
		}
	}
	prefix, err := normalizePrefix(cfg.Prefix)
	if err != nil {
		return cfg, "", err
	}
	if cfg.Region == "" {
		cfg.Region = DefaultS3Region
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultS3RequestTimeout
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultS3MaxAttempts
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultS3MaxBackoff
	}
	return cfg, prefix, nil
}

// s3Retryer is the SDK's standard retryer with cfg's attempts and backoff
// cap, without a retry quota, also retrying ConditionalRequestConflict.
func s3Retryer(cfg S3Config) aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = cfg.MaxAttempts
		o.MaxBackoff = cfg.MaxBackoff
		// Each call makes up to MaxAttempts attempts whatever happened
		// before; callers (the uploader) have their own retry loops, and a
		// quota drained during an outage would only make recovery slower
		// to observe.
		o.RateLimiter = ratelimit.None
		// A conditional PUT racing another write of the same key may get
		// 409 ConditionalRequestConflict; S3 documents it as retryable.
		o.Retryables = append(slices.Clone(o.Retryables), retry.RetryableErrorCode{
			Codes: map[string]struct{}{"ConditionalRequestConflict": {}},
		})
	})
}

// loadAWSConfig loads the SDK configuration for cfg.
func loadAWSConfig(ctx context.Context, cfg S3Config) (aws.Config, error) {
	retryer := s3Retryer(cfg)
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(cfg.Region),
		// A BuildableClient, so that configuration such as AWS_CA_BUNDLE
		// can adjust its transport; the store takes the transport over.
		config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			tr.MaxIdleConns = 256
			tr.MaxIdleConnsPerHost = 64
		}).WithDialerOptions(func(d *net.Dialer) {
			d.Timeout = min(cfg.RequestTimeout, 10*time.Second)
		})),
		config.WithRetryer(func() aws.Retryer { return retryer }),
		config.WithLogger(logging.Nop{}),
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	// The SDK's loader still reads the standard AWS_* environment and
	// shared config (AWS_CA_BUNDLE, AWS_REQUEST_CHECKSUM_CALCULATION, ...),
	// which S3-compatible deployments sometimes need.
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("s3seg: s3 store: loading the AWS SDK configuration (AWS_* environment variables, shared config files): %w", err)
	}
	return awsCfg, nil
}

// newS3Client is the S3 client over transport tr.
func newS3Client(awsCfg aws.Config, cfg S3Config, tr *http.Transport) *s3.Client {
	httpClient := &http.Client{
		Transport: tr,
		// Per attempt: covers connecting, sending, and reading the whole
		// response body (which for GetObject happens after the SDK returns).
		Timeout: cfg.RequestTimeout,
		// Redirects (a wrong region) are errors to report, not to follow:
		// a SigV4 signature is bound to the original host anyway.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.HTTPClient = httpClient
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		o.DisableLogOutputChecksumValidationSkipped = true
		o.APIOptions = append(o.APIOptions, addAttemptCounter)
	})
}

func normalizePrefix(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return "", nil
	}
	if err := ValidateKey(p); err != nil {
		return "", fmt.Errorf("s3seg: s3 store: key prefix: %w", err)
	}
	return p + "/", nil
}

// Bucket returns the bucket name.
func (s *S3Store) Bucket() string { return s.bucket }

// Prefix returns the normalised key prefix ("" or ending in '/').
func (s *S3Store) Prefix() string { return s.prefix }

// Close releases idle HTTP connections. The store remains usable (a later
// call opens new connections); Close is idempotent.
func (s *S3Store) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}

// attemptCounterKey is the context key of a per-call *atomic.Int32 that the
// attempt-counting middleware increments once per HTTP attempt.
type attemptCounterKey struct{}

func addAttemptCounter(stack *middleware.Stack) error {
	return stack.Finalize.Insert(middleware.FinalizeMiddlewareFunc("StreamhouseAttemptCounter",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			if c, ok := ctx.Value(attemptCounterKey{}).(*atomic.Int32); ok {
				c.Add(1)
			}
			return next.HandleFinalize(ctx, in)
		}), "Retry", middleware.After)
}

// begin validates key and returns its full name in the bucket.
func (s *S3Store) begin(ctx context.Context, key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	full := s.prefix + key
	if len(full) > MaxKeyLength {
		return "", fmt.Errorf("%w %q: with the store prefix %q it is longer than %d bytes", ErrInvalidKey, key, s.prefix, MaxKeyLength)
	}
	return full, ctx.Err()
}

// Put implements ObjectStore with a conditional PUT (If-None-Match: *).
//
// If the SDK retried the PUT (an earlier attempt timed out or lost its
// connection) and the retry found the key taken, the earlier attempt may
// have landed: Put then reads the object back and succeeds if it holds
// exactly data.
func (s *S3Store) Put(ctx context.Context, key string, data []byte) error {
	full, err := s.begin(ctx, key)
	if err != nil {
		return err
	}
	var attempts atomic.Int32
	_, err = s.client.PutObject(context.WithValue(ctx, attemptCounterKey{}, &attempts), &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(full),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		IfNoneMatch:   aws.String("*"),
	})
	if err == nil {
		return nil
	}
	err = s.opError(ctx, OpPut, key, err)
	if errors.Is(err, ErrExists) && attempts.Load() > 1 {
		if got, gerr := s.Get(ctx, key); gerr == nil && bytes.Equal(got, data) {
			return nil // our own earlier attempt stored it
		}
	}
	return err
}

// Get implements ObjectStore.
func (s *S3Store) Get(ctx context.Context, key string) ([]byte, error) {
	full, err := s.begin(ctx, key)
	if err != nil {
		return nil, err
	}
	data, _, err := s.getObject(ctx, OpGet, key, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(full)})
	return data, err
}

// GetRange implements ObjectStore with one ranged GET
// (Range: bytes=off-(off+n-1)). The response must hold exactly n bytes; a
// range that starts at or runs past the end of the object is
// ErrInvalidRange, as for LocalStore.
func (s *S3Store) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	full, err := s.begin(ctx, key)
	if err != nil {
		return nil, err
	}
	if off < 0 || n <= 0 || n > math.MaxInt64-off {
		return nil, fmt.Errorf("%w: [%d,+%d) (key %q)", ErrInvalidRange, off, n, key)
	}
	data, out, err := s.getObject(ctx, OpGetRange, key, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(full),
		Range:  aws.String(fmt.Sprintf("bytes=%d-%d", off, off+n-1)),
	})
	if err != nil {
		return nil, err
	}
	cr := aws.ToString(out.ContentRange)
	if cr == "" {
		// The server ignored Range and sent the whole object.
		if err := checkRange(off, n, int64(len(data))); err != nil {
			return nil, fmt.Errorf("%w (key %q)", err, key)
		}
		return data[off : off+n : off+n], nil
	}
	start, end, size, ok := parseContentRange(cr)
	switch {
	case !ok || start != off || end-start+1 != int64(len(data)):
		return nil, fmt.Errorf("s3seg: s3 get range %q [%d,+%d): response Content-Range %q does not match its %d body bytes", key, off, n, cr, len(data))
	case int64(len(data)) == n:
		return data, nil
	case size >= 0 && off+n > size:
		return nil, fmt.Errorf("%w: [%d,+%d) of a %d-byte object (key %q)", ErrInvalidRange, off, n, size, key)
	default:
		return nil, fmt.Errorf("s3seg: s3 get range %q [%d,+%d): short read, got %d bytes (Content-Range %q)", key, off, n, len(data), cr)
	}
}

// parseContentRange parses "bytes <start>-<end>/<size>"; size is -1 for "*".
func parseContentRange(v string) (start, end, size int64, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, total, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	var err1, err2, err3 error
	start, err1 = strconv.ParseInt(a, 10, 64)
	end, err2 = strconv.ParseInt(b, 10, 64)
	size = -1
	if total != "*" {
		size, err3 = strconv.ParseInt(total, 10, 64)
	}
	if err1 != nil || err2 != nil || err3 != nil || start < 0 || end < start {
		return 0, 0, 0, false
	}
	return start, end, size, true
}

// getObject runs GetObject and reads the whole body. The SDK retries the
// request; a body that fails mid-transfer (after the SDK returned) is
// fetched again, up to maxAttempts times in all, with the same backoff.
func (s *S3Store) getObject(ctx context.Context, op, key string, in *s3.GetObjectInput) ([]byte, *s3.GetObjectOutput, error) {
	for attempt := 1; ; attempt++ {
		out, err := s.client.GetObject(ctx, in)
		if err != nil {
			return nil, nil, s.opError(ctx, op, key, err)
		}
		cl := int64(-1)
		if out.ContentLength != nil {
			cl = *out.ContentLength
		}
		data, err := readBody(out.Body, cl)
		if err == nil {
			return data, out, nil
		}
		if ctx.Err() != nil || attempt >= s.maxAttempts {
			return nil, nil, s.opError(ctx, op, key, fmt.Errorf("reading response body: %w", err))
		}
		t := time.NewTimer(s.retryDelay(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, s.opError(ctx, op, key, err)
		case <-t.C:
		}
	}
}

// retryDelay is the delay before retrying after failed attempt number
// attempt (1-based): the SDK standard retryer's formula for non-throttling
// errors, uniform jitter over min(50 ms * 2^(attempt-1), MaxBackoff).
func (s *S3Store) retryDelay(attempt int) time.Duration {
	d := s.maxBackoff
	if attempt <= 20 {
		d = min(d, 50*time.Millisecond<<(attempt-1))
	}
	return rand.N(d) + 1
}

func readBody(body io.ReadCloser, contentLength int64) ([]byte, error) {
	defer body.Close()
	var buf bytes.Buffer
	if contentLength > 0 && contentLength <= MaxBlockSize {
		buf.Grow(int(contentLength) + 1) // +1: ReadFrom needs room to see EOF
	}
	if _, err := buf.ReadFrom(body); err != nil {
		return nil, err
	}
	if contentLength >= 0 && int64(buf.Len()) != contentLength {
		return nil, fmt.Errorf("got %d body bytes, Content-Length says %d", buf.Len(), contentLength)
	}
	return buf.Bytes(), nil
}

// Head implements ObjectStore. On a HEAD, S3 cannot say whether the key or
// the bucket is missing (no error body): both give ErrNotFound.
func (s *S3Store) Head(ctx context.Context, key string) (ObjectInfo, error) {
	full, err := s.begin(ctx, key)
	if err != nil {
		return ObjectInfo{}, err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(full)})
	if err != nil {
		return ObjectInfo{}, s.opError(ctx, OpHead, key, err)
	}
	return ObjectInfo{Key: key, Size: aws.ToInt64(out.ContentLength), LastModified: aws.ToTime(out.LastModified)}, nil
}

// Delete implements ObjectStore. S3 answers a delete of a missing key with
// success.
func (s *S3Store) Delete(ctx context.Context, key string) error {
	full, err := s.begin(ctx, key)
	if err != nil {
		return err
	}
	_, err = s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(full)})
	if err != nil {
		if err := s.opError(ctx, OpDelete, key, err); !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}

// List implements ObjectStore: ListObjectsV2 under Prefix+prefix, every
// page, the store prefix stripped, sorted by key. Objects whose names are
// not valid keys (written by other tools, such as "dir/" markers) are
// skipped, as LocalStore skips files that are not keys.
func (s *S3Store) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Only keys whose directory part is a valid key path can match; do not
	// send other prefixes (some servers reject "../" and the like).
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 && ValidateKey(prefix[:i]) != nil {
		return nil, nil
	}
	full := s.prefix + prefix
	if len(full) > MaxKeyLength {
		return nil, nil
	}
	in := &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket)}
	if full != "" {
		in.Prefix = aws.String(full)
	}
	if s.listPageSize > 0 {
		in.MaxKeys = aws.Int32(s.listPageSize)
	}
	var out []ObjectInfo
	p := s3.NewListObjectsV2Paginator(s.client, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, s.opError(ctx, OpList, prefix, err)
		}
		for _, o := range page.Contents {
			k, ok := strings.CutPrefix(aws.ToString(o.Key), s.prefix)
			if !ok || !strings.HasPrefix(k, prefix) || ValidateKey(k) != nil {
				continue
			}
			out = append(out, ObjectInfo{Key: k, Size: aws.ToInt64(o.Size), LastModified: aws.ToTime(o.LastModified)})
		}
	}
	slices.SortFunc(out, func(a, b ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// Check implements ObjectStore with one HeadBucket request (no retries: a
// readiness probe must answer promptly). Its errors say what to fix:
//
//   - ErrAccessDenied: no credentials could be obtained, or S3 answered 403
//     (wrong AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or no permission);
//   - ErrBucketNotFound: the bucket does not exist (it is never created
//     implicitly);
//   - ErrUnreachable: nothing answered at the endpoint within
//     RequestTimeout.
//
// A wrong region is reported with the bucket's actual region when S3 says
// it.
func (s *S3Store) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.creds == nil {
		return fmt.Errorf("%w: no AWS credentials configured: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or provide credentials through the default AWS chain", ErrAccessDenied)
	}
	if _, err := s.creds.Retrieve(ctx); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("s3seg: s3 check: %w", cerr)
		}
		return fmt.Errorf("%w: could not obtain AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or provide them through the default AWS chain (AWS_PROFILE, web identity, container or instance role): %w", ErrAccessDenied, err)
	}
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)}, func(o *s3.Options) {
		o.RetryMaxAttempts = 1
	})
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("s3seg: s3 check of bucket %q at %s: %w: %w", s.bucket, s.endpoint, cerr, err)
	}
	status, code, hdr := apiDetails(err)
	switch {
	case isSendError(err):
		return fmt.Errorf("%w: S3 endpoint %s did not answer (check S3_ENDPOINT, and that the server is running and reachable): %w", ErrUnreachable, s.endpoint, err)
	case status == http.StatusNotFound || code == "NoSuchBucket":
		return fmt.Errorf("%w: %q at %s (create the bucket, or fix S3_BUCKET): %w", ErrBucketNotFound, s.bucket, s.endpoint, err)
	case status == http.StatusForbidden:
		return fmt.Errorf("%w: S3 refused access to bucket %q at %s: the credentials are invalid or lack permission (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the credential chain, and the bucket policy): %w", ErrAccessDenied, s.bucket, s.endpoint, err)
	case status == http.StatusMovedPermanently || code == "PermanentRedirect" || code == "AuthorizationHeaderMalformed":
		where := "another region"
		if r := hdr.Get("X-Amz-Bucket-Region"); r != "" {
			where = "region " + r
		}
		return fmt.Errorf("s3seg: bucket %q is in %s, not the configured one (check S3_REGION): %w", s.bucket, where, err)
	}
	return fmt.Errorf("s3seg: s3 check of bucket %q at %s: %w", s.bucket, s.endpoint, err)
}

// apiDetails extracts the HTTP status, the S3 error code and the response
// headers of an SDK error (zero values when there was no response).
func apiDetails(err error) (status int, code string, hdr http.Header) {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
		if re.Response != nil {
			hdr = re.Response.Header
		}
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	return status, code, hdr
}

// isSendError reports an error from sending the request or reading the
// response headers: refused connection, DNS, timeout, reset.
func isSendError(err error) bool {
	var se *smithyhttp.RequestSendError
	return errors.As(err, &se)
}

// opError maps an SDK error of operation op on key to the package's
// sentinels and wraps both.
func (s *S3Store) opError(ctx context.Context, op, key string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		if errors.Is(err, cerr) {
			return fmt.Errorf("s3seg: s3 %s %q: %w", op, key, err)
		}
		return fmt.Errorf("s3seg: s3 %s %q: %w: %w", op, key, cerr, err)
	}
	status, code, _ := apiDetails(err)
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	var sentinel error
	hint := ""
	switch {
	case code == "NoSuchBucket":
		sentinel, hint = ErrBucketNotFound, fmt.Sprintf(" (bucket %q at %s)", s.bucket, s.endpoint)
	case errors.As(err, &nsk) || errors.As(err, &nf) || status == http.StatusNotFound:
		sentinel = ErrNotFound
	case op == OpPut && (status == http.StatusPreconditionFailed || code == "PreconditionFailed" ||
		code == "ConditionalRequestConflict"): // 409 after every retry: another write of the key keeps winning
		sentinel = ErrExists
	case status == http.StatusRequestedRangeNotSatisfiable || code == "InvalidRange":
		sentinel = ErrInvalidRange
	case status == http.StatusForbidden:
		sentinel, hint = ErrAccessDenied, " (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket policy)"
	case isSendError(err):
		sentinel, hint = ErrUnreachable, " (endpoint "+s.endpoint+")"
	default:
		return fmt.Errorf("s3seg: s3 %s %q: %w", op, key, err)
	}
	return fmt.Errorf("%w%s: s3 %s %q: %w", sentinel, hint, op, key, err)
}
