import com.amazonaws.services.dynamodbv2.streamsadapter.AmazonDynamoDBStreamsAdapterClient;
import com.amazonaws.services.dynamodbv2.streamsadapter.StreamsSchedulerFactory;
import com.amazonaws.services.dynamodbv2.streamsadapter.model.DynamoDBStreamsProcessRecordsInput;
import com.amazonaws.services.dynamodbv2.streamsadapter.polling.DynamoDBStreamsPollingConfig;
import com.amazonaws.services.dynamodbv2.streamsadapter.processor.DynamoDBStreamsShardRecordProcessor;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.classic.spi.IThrowableProxy;
import ch.qos.logback.classic.spi.ThrowableProxyUtil;
import ch.qos.logback.core.LayoutBase;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.lang.reflect.Field;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.time.Instant;
import java.util.Locale;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.slf4j.MDC;
import sun.misc.Signal;
import software.amazon.awssdk.auth.credentials.AwsCredentialsProvider;
import software.amazon.awssdk.core.client.config.ClientOverrideConfiguration;
import software.amazon.awssdk.core.exception.SdkClientException;
import software.amazon.awssdk.core.exception.SdkException;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.cloudwatch.CloudWatchAsyncClient;
import software.amazon.awssdk.services.cloudwatch.CloudWatchAsyncClientBuilder;
import software.amazon.awssdk.services.dynamodb.DynamoDbAsyncClient;
import software.amazon.awssdk.services.dynamodb.DynamoDbAsyncClientBuilder;
import software.amazon.awssdk.services.dynamodb.model.DescribeStreamRequest;
import software.amazon.awssdk.services.dynamodb.model.DescribeStreamResponse;
import software.amazon.awssdk.services.dynamodb.model.GetRecordsRequest;
import software.amazon.awssdk.services.dynamodb.model.GetRecordsResponse;
import software.amazon.awssdk.services.dynamodb.model.GetShardIteratorRequest;
import software.amazon.awssdk.services.dynamodb.model.GetShardIteratorResponse;
import software.amazon.awssdk.services.dynamodb.model.ListStreamsRequest;
import software.amazon.awssdk.services.dynamodb.model.ListStreamsResponse;
import software.amazon.awssdk.services.dynamodb.model.ResourceNotFoundException;
import software.amazon.awssdk.services.dynamodb.model.Shard;
import software.amazon.awssdk.services.dynamodb.model.StreamDescription;
import software.amazon.awssdk.services.dynamodb.model.ShardIteratorType;
import software.amazon.awssdk.services.dynamodb.model.TrimmedDataAccessException;
import software.amazon.awssdk.services.dynamodb.streams.DynamoDbStreamsClient;
import software.amazon.awssdk.services.dynamodb.streams.DynamoDbStreamsClientBuilder;
import software.amazon.awssdk.services.dynamodb.streams.DynamoDbStreamsServiceClientConfiguration;
import software.amazon.kinesis.checkpoint.CheckpointConfig;
import software.amazon.kinesis.checkpoint.ShardRecordProcessorCheckpointer;
import software.amazon.kinesis.common.ConfigsBuilder;
import software.amazon.kinesis.common.InitialPositionInStream;
import software.amazon.kinesis.common.InitialPositionInStreamExtended;
import software.amazon.kinesis.coordinator.CoordinatorConfig;
import software.amazon.kinesis.coordinator.Scheduler;
import software.amazon.kinesis.coordinator.WorkerStateChangeListener;
import software.amazon.kinesis.leases.Lease;
import software.amazon.kinesis.leases.LeaseCoordinator;
import software.amazon.kinesis.leases.LeaseManagementConfig;
import software.amazon.kinesis.leases.exceptions.DependencyException;
import software.amazon.kinesis.leases.exceptions.InvalidStateException;
import software.amazon.kinesis.leases.exceptions.ProvisionedThroughputException;
import software.amazon.kinesis.leases.ShardSyncTaskManager;
import software.amazon.kinesis.lifecycle.LifecycleConfig;
import software.amazon.kinesis.lifecycle.TaskResult;
import software.amazon.kinesis.lifecycle.events.InitializationInput;
import software.amazon.kinesis.lifecycle.events.LeaseLostInput;
import software.amazon.kinesis.lifecycle.events.ProcessRecordsInput;
import software.amazon.kinesis.lifecycle.events.ShardEndedInput;
import software.amazon.kinesis.lifecycle.events.ShutdownRequestedInput;
import software.amazon.kinesis.metrics.MetricsConfig;
import software.amazon.kinesis.metrics.MetricsLevel;
import software.amazon.kinesis.metrics.NullMetricsFactory;
import software.amazon.kinesis.multilang.MultiLangDaemonConfig;
import software.amazon.kinesis.multilang.MultiLangRecordProcessorFactory;
import software.amazon.kinesis.multilang.config.ConfigurationSettableUtils;
import software.amazon.kinesis.multilang.config.MultiLangDaemonConfiguration;
import software.amazon.kinesis.processor.ProcessorConfig;
import software.amazon.kinesis.processor.RecordProcessorCheckpointer;
import software.amazon.kinesis.processor.ShardRecordProcessor;
import software.amazon.kinesis.processor.ShardRecordProcessorFactory;
import software.amazon.kinesis.processor.StreamTracker;
import software.amazon.kinesis.retrieval.KinesisClientRecord;
import software.amazon.kinesis.retrieval.RetrievalConfig;
import software.amazon.kinesis.retrieval.kpl.ExtendedSequenceNumber;

/**
 * Runs the KCL multilang protocol on a DynamoDB stream.
 *
 * <p>The stock MultiLangDaemon builds a Kinesis client and a plain Kinesis stream tracker, and the Streams adapter's
 * scheduler factory rejects its record processor, so it cannot read DynamoDB Streams. This launcher reuses the
 * daemon's property parsing, child-process factory and executor, and composes the Scheduler the way the adapter
 * expects: one adapter client shared by the stream tracker, the polling config and the scheduler, and every
 * multilang processor wrapped so that it passes the adapter's type check.
 *
 * <p>Keys read here that the multilang parser ignores: dynamoDbStreamArn, dynamoDBStreamsEndpoint,
 * cloudWatchEndpoint, streamsMaxAttempts, leaderLockMillis, engineStateFile, trimmedGapsFile, onTrimmed,
 * shardSyncAtStart, referenceProcessor. Exit status: 0 after a completed graceful shutdown, 1 if the shutdown did not finish within
 * shutdownGraceMillis or the scheduler failed, 2 for an unusable configuration, 4 when a shard's position was older
 * than the stream's retention and onTrimmed is fail.
 *
 * <p>{@code referenceProcessor = count} (benchmarks only) replaces the child processes with {@link CountingProcessor}:
 * the same scheduler, leases and checkpoints with no multilang hop and no Python, as the baseline the service is
 * measured against.
 */
public final class StreamsBridge {
    private static final Logger log = LoggerFactory.getLogger(StreamsBridge.class);
    private static final AtomicBoolean SHUTTING_DOWN = new AtomicBoolean(false);
    private static final AtomicBoolean SCHEDULER_FAILED = new AtomicBoolean(false);
    private static final AtomicBoolean SIGNALLED = new AtomicBoolean(false);
    private static final AtomicBoolean TRIMMED_STOP = new AtomicBoolean(false);
    static final int EXIT_TRIMMED = 4;
    // Record processors whose child may still deliver or checkpoint: initialised, and not yet told to stop (shutdown
    // requested), that the lease is lost, or that the shard ended. A graceful stop is complete once this is empty.
    private static final Set<AdapterProcessor> LIVE = ConcurrentHashMap.newKeySet();
    // Once every child is done, how long the rest of the KCL's shutdown (leader lock, worker metrics) may take
    // before the JVM stops anyway: nothing a child settled depends on it, and the leases lapse for other workers.
    private static final long SCHEDULER_WIND_DOWN_MILLIS = 2000;
    private static final long SHUTDOWN_POLL_MILLIS = 100;
    private static volatile LeaseCoordinator leaseCoordinator;
    private static volatile LatestPins latestPins;
    // Shards whose child has been initialised, which the KCL does only after it got the shard's iterator: from
    // then on the shard's position is fixed, and what is written to it will be read.
    private static final Set<String> POSITIONED = ConcurrentHashMap.newKeySet();
    // Set when the lease table holds leases of another stream (shardSyncAtStart): see syncShardsOnce.
    private static volatile ShardSyncTaskManager startSync;
    private static final int START_SYNC_ATTEMPTS = 5;

    private StreamsBridge() {}

    public static void main(String[] args) {
        if (args.length != 1) {
            System.err.println("usage: StreamsBridge <kcl.properties>");
            System.exit(2);
        }
        Scheduler scheduler;
        long graceMillis;
        try {
            Properties raw = load(args[0]);
            MultiLangDaemonConfig daemonConfig = new MultiLangDaemonConfig(args[0]);
            MultiLangDaemonConfiguration cfg = daemonConfig.getMultiLangDaemonConfiguration();
            graceMillis = cfg.getShutdownGraceMillis();
            scheduler = buildScheduler(raw, cfg, daemonConfig.getRecordProcessorFactory());
        } catch (IOException | RuntimeException e) {
            // One line the supervisor can show as is; the stack trace only helps us, so it goes to the log.
            log.debug("bridge configuration failed", e);
            System.err.println("bridge: invalid KCL configuration: " + rootMessage(e));
            System.exit(2);
            return;
        }

        // A stop asked for by a signal is the only clean way out. Any other System.exit (the multilang daemon calls
        // System.exit(1) when a child dies or breaks the protocol) also runs the shutdown hook, which must then not
        // report success: the hook cannot see the exit status, so the signal handlers mark the clean case.
        for (String name : new String[] {"TERM", "INT"}) {
            Signal.handle(new Signal(name), signal -> {
                SIGNALLED.set(true);
                System.exit(0);
            });
        }
        syncShardsOnce();
        Thread schedulerThread = new Thread(scheduler, "kcl-scheduler");
        Runtime.getRuntime().addShutdownHook(new Thread(() -> gracefulShutdown(scheduler, graceMillis), "bridge-shutdown"));
        schedulerThread.start();
        try {
            schedulerThread.join();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (SHUTTING_DOWN.get()) {
            return; // the shutdown hook owns the exit status
        }
        // The scheduler stopped on its own (e.g. initialisation failed for good). The multilang executor's threads
        // are not daemons, so the JVM would otherwise linger. exit() runs the shutdown hook, which must not turn this
        // into a clean stop: the already-stopped scheduler reports its graceful shutdown as done at once.
        log.error("KCL scheduler stopped without a shutdown request");
        SCHEDULER_FAILED.set(true);
        System.exit(1);
    }

    /**
     * The KCL syncs shards at start only into an empty lease table (the adapter forces
     * skipShardSyncAtWorkerInitializationIfLeasesExist), and otherwise leaves it to the leader's periodic sync, a
     * minute or more later. After a stream switch the lease table holds the old stream's finished leases, so the
     * new stream would wait that long for its leases: the supervisor asks for one sync before the scheduler runs.
     */
    private static void syncShardsOnce() {
        ShardSyncTaskManager sync = startSync;
        if (sync == null) {
            return;
        }
        for (int attempt = 1; attempt <= START_SYNC_ATTEMPTS; attempt++) {
            TaskResult result = sync.callShardSyncTask();
            if (result.getException() == null) {
                log.info("shard sync at start done: the stream's shards have their leases");
                return;
            }
            log.warn("shard sync at start failed (attempt {} of {}): {}", attempt, START_SYNC_ATTEMPTS,
                    rootMessage(result.getException()));
            try {
                Thread.sleep(1000L * attempt);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
        log.warn("shard sync at start gave up; the KCL's periodic shard sync will create the leases");
    }

    private static void gracefulShutdown(Scheduler scheduler, long graceMillis) {
        SHUTTING_DOWN.set(true);
        if (TRIMMED_STOP.get()) {
            // on_trimmed: fail. Nothing past the gap was read, so its checkpoint cannot have moved. That shard's
            // consumer task waits on the thread that called exit, and a graceful shutdown would wait on the task;
            // other shards' batches in flight are read again after the restart, as after a crash.
            Runtime.getRuntime().halt(EXIT_TRIMMED);
        }
        if (!SIGNALLED.get()) {
            // Not a stop request: a child died or broke the protocol (or the scheduler gave up). Every batch a child
            // settled is already checkpointed, and the thread that called exit may hold the very shard consumer a
            // graceful shutdown would wait for. Stop now and let the orchestrator restart the service.
            log.error("engine stopping after a failure; the orchestrator should restart it");
            Runtime.getRuntime().halt(1);
        }
        log.info("shutdown requested; finishing in-flight batches (grace {} ms)", graceMillis);
        long started = System.nanoTime();
        int status = awaitGracefulShutdown(scheduler.startGracefulShutdown(), graceMillis, started);
        log.info("graceful shutdown took {} ms of the {} ms grace", (System.nanoTime() - started) / 1_000_000,
                graceMillis);
        if (SCHEDULER_FAILED.get()) {
            status = 1;
        }
        // halt, not exit: the JVM is already shutting down (exit would block), and a signal-triggered shutdown
        // otherwise ends with 128+signal even when every checkpoint was written.
        Runtime.getRuntime().halt(status);
    }

    /**
     * 0 once every child has written its final checkpoint (or given its batch up) and the scheduler has wound down,
     * or every child is done and the scheduler's own shutdown outlives {@link #SCHEDULER_WIND_DOWN_MILLIS}. The
     * KCL's graceful shutdown waits for every shard consumer to be notified, which a consumer at the end of its
     * shard never is, and then for its final shutdown loop: neither matters to what is checkpointed.
     */
    private static int awaitGracefulShutdown(Future<Boolean> shutdown, long graceMillis, long startedNanos) {
        long deadline = startedNanos + TimeUnit.MILLISECONDS.toNanos(graceMillis);
        long childrenDoneAt = 0;
        while (true) {
            try {
                boolean done = shutdown.get(SHUTDOWN_POLL_MILLIS, TimeUnit.MILLISECONDS);
                log.info("graceful shutdown {}", done ? "complete" : "reported failure");
                return done || LIVE.isEmpty() ? 0 : 1;
            } catch (TimeoutException e) {
                long now = System.nanoTime();
                if (LIVE.isEmpty()) {
                    if (childrenDoneAt == 0) {
                        childrenDoneAt = now;
                        log.info("every record processor has stopped; waiting up to {} ms for the scheduler",
                                SCHEDULER_WIND_DOWN_MILLIS);
                    } else if (now - childrenDoneAt > TimeUnit.MILLISECONDS.toNanos(SCHEDULER_WIND_DOWN_MILLIS)) {
                        log.info("every record processor has stopped; not waiting longer for the scheduler");
                        return 0;
                    }
                }
                if (now > deadline) {
                    log.error("graceful shutdown did not finish within {} ms ({} record processors still running)",
                            graceMillis, LIVE.size());
                    return 1;
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return 1;
            } catch (ExecutionException e) {
                log.error("graceful shutdown failed: {}", rootMessage(e));
                return LIVE.isEmpty() ? 0 : 1;
            }
        }
    }

    /**
     * Writes the position LATEST resolved to into the lease, in place of the LATEST sentinel. Left as LATEST until
     * the shard's first checkpoint, the lease would be resolved again by whoever reads the shard next (a restart, a
     * lease moving to another worker), skipping what was written in between without a word.
     */
    static void pinLatest(InitializationInput input) {
        LatestPins pins = latestPins;
        LeaseCoordinator coordinator = leaseCoordinator;
        if (!ExtendedSequenceNumber.LATEST.equals(input.extendedSequenceNumber()) || pins == null
                || coordinator == null) {
            return;
        }
        String shardId = input.shardId();
        ExtendedSequenceNumber pin = pins.resolve(shardId);
        if (pin == null) {
            return; // the stream no longer has the shard: the engine ends it
        }
        Lease held = coordinator.getCurrentlyHeldLease(shardId);
        if (held == null) {
            throw new IllegalStateException("shard " + shardId + ": lease not held while fixing its LATEST position");
        }
        held.checkpoint(pin);
        held.pendingCheckpoint(null);
        held.pendingCheckpointState(null);
        held.ownerSwitchesSinceCheckpoint(0L);
        try {
            if (!coordinator.updateLease(held, held.concurrencyToken(), "PinLatest", shardId)) {
                throw new IllegalStateException("shard " + shardId + ": lease lost while fixing its LATEST position");
            }
        } catch (DependencyException | InvalidStateException | ProvisionedThroughputException e) {
            throw new IllegalStateException("shard " + shardId + ": cannot write its LATEST position: "
                    + rootMessage(e), e);
        }
        log.info("shard {} starts at LATEST: position fixed in the lease as {}", shardId,
                ExtendedSequenceNumber.TRIM_HORIZON.equals(pin)
                        ? "TRIM_HORIZON (the shard held no record)"
                        : "after sequence number " + pin.sequenceNumber());
    }

    static Scheduler buildScheduler(Properties raw, MultiLangDaemonConfiguration cfg,
            MultiLangRecordProcessorFactory multiLangFactory) {
        String streamArn = require(raw, "dynamoDbStreamArn");
        String leaderLock = raw.getProperty("leaderLockMillis");
        if (leaderLock != null && !leaderLock.isBlank()) {
            shortenLeaderLock(Long.parseLong(leaderLock.trim()));
        }
        Region region = Region.of(require(raw, "regionName"));
        AwsCredentialsProvider credentials = cfg.getKinesisCredentialsProvider().build(AwsCredentialsProvider.class);
        int streamsMaxAttempts = Integer.parseInt(raw.getProperty("streamsMaxAttempts", "10"));

        DynamoDbStreamsClientBuilder streamsBuilder = DynamoDbStreamsClient.builder()
                .region(region)
                .credentialsProvider(credentials)
                .overrideConfiguration(ClientOverrideConfiguration.builder()
                        .retryStrategy(b -> b.maxAttempts(streamsMaxAttempts))
                        .apiCallAttemptTimeout(Duration.ofSeconds(10))
                        .build());
        endpoint(raw, "dynamoDBStreamsEndpoint", "dynamoDBEndpoint").ifPresent(streamsBuilder::endpointOverride);
        String onTrimmed = raw.getProperty("onTrimmed", "continue").trim();
        if (!onTrimmed.equals("continue") && !onTrimmed.equals("fail")) {
            throw new IllegalArgumentException("onTrimmed must be continue or fail, not " + onTrimmed);
        }
        String gapsFile = raw.getProperty("trimmedGapsFile", "").trim();
        DynamoDbStreamsClient plainStreams = streamsBuilder.build();
        TrimmedGapWatch trimmedGapWatch = new TrimmedGapWatch(plainStreams, onTrimmed.equals("fail"),
                gapsFile.isEmpty() ? null : Paths.get(gapsFile));
        ForeignShardGuard foreignShardGuard = new ForeignShardGuard(trimmedGapWatch, plainStreams);
        LatestPins pins = new LatestPins(foreignShardGuard, plainStreams, streamArn);
        latestPins = pins;
        AmazonDynamoDBStreamsAdapterClient adapterClient = new AmazonDynamoDBStreamsAdapterClient(pins, region);

        DynamoDbAsyncClientBuilder dynamoBuilder =
                DynamoDbAsyncClient.builder().region(region).credentialsProvider(credentials);
        endpoint(raw, "dynamoDBEndpoint").ifPresent(dynamoBuilder::endpointOverride);
        CloudWatchAsyncClientBuilder cloudWatchBuilder =
                CloudWatchAsyncClient.builder().region(region).credentialsProvider(credentials);
        endpoint(raw, "cloudWatchEndpoint", "dynamoDBEndpoint").ifPresent(cloudWatchBuilder::endpointOverride);

        InitialPositionInStream position = cfg.getInitialPositionInStream() == null
                ? InitialPositionInStream.LATEST
                : cfg.getInitialPositionInStream();
        StreamTracker tracker = StreamsSchedulerFactory.createSingleStreamTracker(
                streamArn, InitialPositionInStreamExtended.newInitialPosition(position));

        String reference = raw.getProperty("referenceProcessor", "").trim();
        if (!reference.isEmpty() && !reference.equals("count")) {
            throw new IllegalArgumentException("referenceProcessor must be count, not " + reference);
        }
        ShardRecordProcessorFactory processors = reference.isEmpty()
                ? () -> new AdapterProcessor(multiLangFactory.shardRecordProcessor())
                : CountingProcessor::new;
        ConfigsBuilder configsBuilder = new ConfigsBuilder(tracker, cfg.getApplicationName(), adapterClient,
                dynamoBuilder.build(), cloudWatchBuilder.build(), cfg.getWorkerIdentifier(), processors);
        if (cfg.getTableName() != null) {
            configsBuilder.tableName(cfg.getTableName());
        }

        // Each xxxConfig() call builds a new object: take each once and keep it.
        CheckpointConfig checkpoint = configsBuilder.checkpointConfig();
        CoordinatorConfig coordinator = configsBuilder.coordinatorConfig();
        LeaseManagementConfig leaseManagement = configsBuilder.leaseManagementConfig();
        LifecycleConfig lifecycle = configsBuilder.lifecycleConfig();
        MetricsConfig metrics = configsBuilder.metricsConfig();
        ProcessorConfig processor = configsBuilder.processorConfig();
        RetrievalConfig retrieval = configsBuilder.retrievalConfig();

        Map<Class<?>, Object> targets = new HashMap<>();
        targets.put(CheckpointConfig.class, checkpoint);
        targets.put(CoordinatorConfig.class, coordinator);
        targets.put(LeaseManagementConfig.class, leaseManagement);
        targets.put(LifecycleConfig.class, lifecycle);
        targets.put(MetricsConfig.class, metrics);
        targets.put(ProcessorConfig.class, processor);
        ConfigurationSettableUtils.resolveFields(cfg, targets, null, null);
        ConfigurationSettableUtils.resolveFields(
                cfg.getCoordinatorStateTableConfigBean(), coordinator.coordinatorStateTableConfig());
        ConfigurationSettableUtils.resolveFields(
                cfg.getGracefulLeaseHandoffConfigBean(), leaseManagement.gracefulLeaseHandoffConfig());
        ConfigurationSettableUtils.resolveFields(cfg.getWorkerUtilizationAwareAssignmentConfigBean(),
                leaseManagement.workerUtilizationAwareAssignmentConfig());
        ConfigurationSettableUtils.resolveFields(cfg.getWorkerMetricStatsTableConfigBean(),
                leaseManagement.workerUtilizationAwareAssignmentConfig().workerMetricsTableConfig());

        String stateFile = raw.getProperty("engineStateFile");
        if (stateFile != null && !stateFile.isBlank()) {
            coordinator.workerStateChangeListener(
                    new EngineStateFile(Paths.get(stateFile.trim())));
        }

        // The adapter zeroes this inside createScheduler, but 2.0.1 reads it into its lease-management factory
        // first, so every shard sync would then idle for the default 60 s before the worker may start.
        leaseManagement.shardSyncIntervalMillis(0);

        DynamoDBStreamsPollingConfig polling = new DynamoDBStreamsPollingConfig(streamArn, adapterClient);
        if (cfg.getMaxRecords() > 0) {
            polling.maxRecords(cfg.getMaxRecords());
        }
        if (cfg.getIdleTimeBetweenReadsInMillis() > 0) {
            polling.idleTimeBetweenReadsInMillis(cfg.getIdleTimeBetweenReadsInMillis());
        }
        retrieval.retrievalSpecificConfig(polling);
        if (cfg.getMetricsLevel() == MetricsLevel.NONE) {
            metrics.metricsFactory(new NullMetricsFactory());
        }

        log.info("reading {} as application {} (worker {}, initial position {})",
                streamArn, cfg.getApplicationName(), cfg.getWorkerIdentifier(), position);
        Scheduler scheduler = StreamsSchedulerFactory.createScheduler(
                checkpoint, coordinator, leaseManagement, lifecycle, metrics, processor, retrieval, adapterClient);
        leaseCoordinator = scheduler.leaseCoordinator();
        if (Boolean.parseBoolean(raw.getProperty("shardSyncAtStart", "false").trim())) {
            // The adapter's lease-management factory, set on the config by createScheduler: the same shard syncer
            // (and initial position) the KCL's own syncs use.
            startSync = adapterLeaseManagement(leaseManagement).createShardSyncTaskManager(
                    new NullMetricsFactory(), tracker.streamConfigList().get(0), null);
        }
        return scheduler;
    }

    /**
     * The factory createScheduler put on the config. Its getter is deprecated in favour of one that builds a new
     * factory, which would not be the adapter's: this one is wanted, and only read.
     */
    @SuppressWarnings("deprecation")
    private static software.amazon.kinesis.leases.LeaseManagementFactory adapterLeaseManagement(
            LeaseManagementConfig config) {
        return config.leaseManagementFactory();
    }

    /**
     * KCL 3 moves the leases of a dead worker only from its leader, and elects the leader through a DynamoDB lock
     * whose lease is hard-coded to 2 minutes (3.1.x): when the worker that dies is the leader, its shards stall for
     * over 2 minutes. The two defaults are static fields read when the scheduler creates the leader decider, so
     * they are replaced before that. The lock item records its own lease duration, so workers with the stock
     * 2 minutes still agree on who leads.
     */
    static void shortenLeaderLock(long lockMillis) {
        long heartbeatMillis = Math.max(1000, lockMillis / 4);
        try {
            Class<?> decider = Class.forName(
                    "software.amazon.kinesis.leader.DynamoDBLockBasedLeaderDecider", true,
                    StreamsBridge.class.getClassLoader());
            // Static finals cannot be set through reflection since Java 12; sun.misc.Unsafe (jdk.unsupported, the
            // module sun.misc.Signal comes from) still can. Reached reflectively to keep javac's warnings away.
            Class<?> unsafeClass = Class.forName("sun.misc.Unsafe");
            Field theUnsafe = unsafeClass.getDeclaredField("theUnsafe");
            theUnsafe.setAccessible(true);
            Object unsafe = theUnsafe.get(null);
            java.lang.reflect.Method base = unsafeClass.getMethod("staticFieldBase", Field.class);
            java.lang.reflect.Method offset = unsafeClass.getMethod("staticFieldOffset", Field.class);
            java.lang.reflect.Method put =
                    unsafeClass.getMethod("putObjectVolatile", Object.class, long.class, Object.class);
            for (Map.Entry<String, Long> entry : Map.of(
                    "DEFAULT_LEASE_DURATION_MILLIS", lockMillis,
                    "DEFAULT_HEARTBEAT_PERIOD_MILLIS", heartbeatMillis).entrySet()) {
                Field field = decider.getDeclaredField(entry.getKey());
                put.invoke(unsafe, base.invoke(unsafe, field), offset.invoke(unsafe, field), entry.getValue());
            }
            log.info("leader lock {} ms, heartbeat {} ms", lockMillis, heartbeatMillis);
        } catch (ReflectiveOperationException | RuntimeException e) {
            // A KCL without these fields (a newer release may make them settable) keeps its own lock.
            log.warn("leader lock left at the KCL default (2 minutes): {}", rootMessage(e));
        }
    }

    private static Properties load(String path) throws IOException {
        Properties properties = new Properties();
        try (InputStream in = new FileInputStream(path)) {
            properties.load(in);
        }
        return properties;
    }

    private static String require(Properties raw, String key) {
        String value = raw.getProperty(key);
        if (value == null || value.isBlank()) {
            throw new IllegalArgumentException("missing property " + key);
        }
        return value.trim();
    }

    private static java.util.Optional<URI> endpoint(Properties raw, String... keys) {
        for (String key : keys) {
            String value = raw.getProperty(key);
            if (value != null && !value.isBlank()) {
                return java.util.Optional.of(URI.create(value.trim()));
            }
        }
        return java.util.Optional.empty();
    }

    private static String rootMessage(Throwable e) {
        Throwable root = e;
        while (root.getCause() != null && root.getCause() != root) {
            root = root.getCause();
        }
        return root.getClass().getSimpleName() + ": " + root.getMessage();
    }

    /**
     * Passes the adapter's type check and hands every lifecycle call to the multilang processor unchanged. The
     * adapter's records extend KinesisClientRecord and carry the JSON of the stream record as their data, which is
     * exactly what the multilang protocol sends to the child.
     */
    static final class AdapterProcessor implements DynamoDBStreamsShardRecordProcessor {
        private final ShardRecordProcessor delegate;
        private volatile String shardId;

        AdapterProcessor(ShardRecordProcessor delegate) {
            this.delegate = delegate;
        }

        @Override
        public void initialize(InitializationInput input) {
            shardId = input.shardId();
            // Before the child starts: a failure here makes the KCL retry the initialisation, so no record of this
            // shard is handed over while its lease still says LATEST.
            pinLatest(input);
            // During a stop the scheduler may start a consumer again for a lease it still holds: such a child has
            // checkpointed nothing the stop must wait for, and whatever it reads it may leave unsettled.
            if (!SHUTTING_DOWN.get()) {
                LIVE.add(this);
            }
            delegate.initialize(input);
            POSITIONED.add(shardId);
        }


        @Override
        public void processRecords(ProcessRecordsInput input) {
            delegate.processRecords(input);
        }

        @Override
        public void processRecords(DynamoDBStreamsProcessRecordsInput input) {
            List<KinesisClientRecord> records = new ArrayList<>(input.records());
            delegate.processRecords(ProcessRecordsInput.builder()
                    .records(records)
                    .checkpointer(input.checkpointer())
                    .millisBehindLatest(input.millisBehindLatest())
                    .isAtShardEnd(input.isAtShardEnd())
                    .childShards(input.childShards())
                    .cacheEntryTime(input.cacheEntryTime())
                    .cacheExitTime(input.cacheExitTime())
                    .build());
        }

        @Override
        public void leaseLost(LeaseLostInput input) {
            try {
                delegate.leaseLost(input);
            } finally {
                LIVE.remove(this);
                POSITIONED.remove(shardId);
            }
        }

        @Override
        public void shardEnded(ShardEndedInput input) {
            try {
                delegate.shardEnded(input);
                if (input.checkpointer() instanceof ShardRecordProcessorCheckpointer checkpointer
                        && !ExtendedSequenceNumber.SHARD_END.equals(checkpointer.lastCheckpointValue())) {
                    giveUpUnfinishedShard();
                }
            } finally {
                LIVE.remove(this);
                POSITIONED.remove(shardId);
            }
        }

        /**
         * The child left records of this shard unsettled (a stop came while it retried them, or its lease was lost)
         * and so did not write SHARD_END. The KCL would retry the shard's end against a child that is gone; giving
         * the lease up ends that, and whoever takes the lease next reads the shard again from its last checkpoint.
         */
        private void giveUpUnfinishedShard() {
            LeaseCoordinator coordinator = leaseCoordinator;
            Lease held = coordinator == null || shardId == null ? null : coordinator.getCurrentlyHeldLease(shardId);
            log.warn("shard {} ended with records unsettled: lease given up, the shard is read again from its last "
                    + "checkpoint", shardId);
            if (held != null) {
                coordinator.dropLease(held);
            }
        }

        @Override
        public void shutdownRequested(ShutdownRequestedInput input) {
            try {
                delegate.shutdownRequested(input);
            } finally {
                LIVE.remove(this);
            }
        }
    }

    /**
     * The benchmarks' Java baseline: counts the records of each batch and checkpoints it, nothing else. What the
     * service costs beyond this is the multilang hop, Python and the sinks.
     */
    static final class CountingProcessor implements DynamoDBStreamsShardRecordProcessor {
        private String shardId = "?";
        private long records;

        @Override
        public void initialize(InitializationInput input) {
            shardId = input.shardId();
            pinLatest(input);
            log.info("reference processor: shard {} started", shardId);
        }

        @Override
        public void processRecords(ProcessRecordsInput input) {
            count(input.records().size(), input.checkpointer());
        }

        @Override
        public void processRecords(DynamoDBStreamsProcessRecordsInput input) {
            count(input.records().size(), input.checkpointer());
        }

        private void count(int size, RecordProcessorCheckpointer checkpointer) {
            if (size == 0) {
                return;
            }
            records += size;
            checkpoint(checkpointer);
        }

        @Override
        public void leaseLost(LeaseLostInput input) {
            log.info("reference processor: shard {} lost after {} records", shardId, records);
        }

        @Override
        public void shardEnded(ShardEndedInput input) {
            checkpoint(input.checkpointer());
        }

        @Override
        public void shutdownRequested(ShutdownRequestedInput input) {
            checkpoint(input.checkpointer());
            log.info("reference processor: shard {} stopped after {} records", shardId, records);
        }

        private void checkpoint(RecordProcessorCheckpointer checkpointer) {
            try {
                checkpointer.checkpoint();
            } catch (Exception e) {
                // A benchmark run with a failed checkpoint is void: stop rather than report a partial count.
                log.error("reference processor: checkpoint failed: {}", rootMessage(e));
                System.exit(1);
            }
        }
    }

    /**
     * Sees the gap the Streams adapter hides. When the position a shard is read from (its checkpoint, or after an
     * expired iterator the last record read) is older than the stream's 24-hour retention, GetShardIterator fails
     * with TrimmedDataAccessException, and adapter 2.0.1 (SKIP_RECORDS_TO_TRIM_HORIZON) logs one warning and reads
     * the shard from TRIM_HORIZON: every record in between is lost to this application without a trace. Sitting
     * between the adapter and the SDK client, this names the gap in an ERROR line (shard, the position asked for,
     * the oldest record still there) and in the gaps file the supervisor counts; then it lets the adapter go on
     * (onTrimmed = continue) or stops the JVM before anything past the gap is read (fail), so that the checkpoint
     * stays where it was.
     */
    /** A DynamoDB Streams client that passes every call on; subclasses change the few they need to. */
    abstract static class DelegatingStreamsClient implements DynamoDbStreamsClient {
        protected final DynamoDbStreamsClient delegate;

        DelegatingStreamsClient(DynamoDbStreamsClient delegate) {
            this.delegate = delegate;
        }

        @Override
        public GetShardIteratorResponse getShardIterator(GetShardIteratorRequest request) {
            return delegate.getShardIterator(request);
        }

        @Override
        public GetRecordsResponse getRecords(GetRecordsRequest request) {
            return delegate.getRecords(request);
        }

        @Override
        public DescribeStreamResponse describeStream(DescribeStreamRequest request) {
            return delegate.describeStream(request);
        }

        @Override
        public ListStreamsResponse listStreams(ListStreamsRequest request) {
            return delegate.listStreams(request);
        }

        @Override
        public DynamoDbStreamsServiceClientConfiguration serviceClientConfiguration() {
            return delegate.serviceClientConfiguration();
        }

        @Override
        public String serviceName() {
            return delegate.serviceName();
        }

        @Override
        public void close() {
            delegate.close();
        }
    }

    /**
     * Resolves LATEST once per shard to a position that can be written into the lease: after the last record the
     * shard holds now, or TRIM_HORIZON if it holds none. DynamoDB Streams has no other way to name "now": a LATEST
     * iterator carries no sequence number. The engine's own LATEST request gets an iterator at the same position,
     * so what it reads and what the lease says agree, whichever comes first.
     *
     * <p>Finding the last record reads the shard once from its oldest record, however long that takes (a shard
     * holds at most 24 hours of records): falling back to plain LATEST would bring the loss back. A scan that fails
     * (throttling past the client's retries) resumes where it stopped when the engine retries.
     */
    static final class LatestPins extends DelegatingStreamsClient {
        // Consecutive empty pages taken for the end of what the shard holds: DynamoDB Streams may answer empty
        // pages in the middle of a shard too. Stopping early only repeats records, never skips one.
        private static final int EMPTY_PAGES_AT_THE_END = 3;
        private static final int PROGRESS_LOG_PAGES = 1000;
        private final DynamoDbStreamsClient scanner;
        private final String streamArn;
        private final Map<String, ExtendedSequenceNumber> resolved = new ConcurrentHashMap<>();
        // The last record a failed scan had reached: the retry reads on from there.
        private final Map<String, String> scannedUpTo = new ConcurrentHashMap<>();
        private final Map<String, Object> shardLocks = new ConcurrentHashMap<>();
        // Shards the stream no longer has: no position to fix; the engine ends them (SHARD_END).
        private final Set<String> vanished = ConcurrentHashMap.newKeySet();

        /**
         * @param delegate what the engine's calls go to
         * @param scanner the plain client the scans read with: a scan is not the engine's read, so the trimmed-gap
         *     watch must not take its TRIM_HORIZON and resumed positions for gaps
         */
        LatestPins(DynamoDbStreamsClient delegate, DynamoDbStreamsClient scanner, String streamArn) {
            super(delegate);
            this.scanner = scanner;
            this.streamArn = streamArn;
        }

        @Override
        public GetShardIteratorResponse getShardIterator(GetShardIteratorRequest request) {
            if (request.shardIteratorType() != ShardIteratorType.LATEST) {
                return delegate.getShardIterator(request);
            }
            ExtendedSequenceNumber pin = resolve(request.shardId());
            if (pin == null) {
                return delegate.getShardIterator(request); // the shard is gone: the engine's answer ends it
            }
            GetShardIteratorRequest.Builder fixed = request.toBuilder();
            if (ExtendedSequenceNumber.TRIM_HORIZON.equals(pin)) {
                fixed.shardIteratorType(ShardIteratorType.TRIM_HORIZON).sequenceNumber(null);
            } else {
                fixed.shardIteratorType(ShardIteratorType.AFTER_SEQUENCE_NUMBER).sequenceNumber(pin.sequenceNumber());
            }
            return delegate.getShardIterator(fixed.build());
        }

        /** The position LATEST stands for on this shard, or null when the stream no longer has the shard. */
        ExtendedSequenceNumber resolve(String shardId) {
            // One lock per shard: scans of different shards run side by side, two asks for one shard scan once.
            synchronized (shardLocks.computeIfAbsent(shardId, id -> new Object())) {
                if (vanished.contains(shardId)) {
                    return null;
                }
                ExtendedSequenceNumber known = resolved.get(shardId);
                if (known != null) {
                    return known;
                }
                ExtendedSequenceNumber pin;
                try {
                    pin = scan(shardId);
                } catch (ResourceNotFoundException e) {
                    vanished.add(shardId);
                    return null;
                } catch (SdkException e) {
                    // Not passed on as it is: the adapter answers a trimmed-data error on a LATEST request with a
                    // TRIM_HORIZON iterator, which would part the read position from the lease.
                    throw new IllegalStateException("shard " + shardId + ": cannot find where LATEST is (retried): "
                            + rootMessage(e), e);
                }
                resolved.put(shardId, pin);
                scannedUpTo.remove(shardId);
                return pin;
            }
        }

        private ExtendedSequenceNumber scan(String shardId) {
            String last = scannedUpTo.get(shardId);
            String iterator;
            try {
                iterator = iteratorFrom(shardId, last);
            } catch (TrimmedDataAccessException e) {
                last = null; // where the failed scan stopped has aged out since: start again from the oldest
                scannedUpTo.remove(shardId);
                iterator = iteratorFrom(shardId, null);
            }
            int emptyPages = 0;
            for (long page = 1; iterator != null; page++) {
                GetRecordsResponse response = scanner.getRecords(
                        GetRecordsRequest.builder().shardIterator(iterator).build());
                if (response.hasRecords() && !response.records().isEmpty()) {
                    last = response.records().get(response.records().size() - 1).dynamodb().sequenceNumber();
                    scannedUpTo.put(shardId, last);
                    emptyPages = 0;
                } else if (++emptyPages >= EMPTY_PAGES_AT_THE_END) {
                    break; // the end of what the shard holds now
                }
                if (page % PROGRESS_LOG_PAGES == 0) {
                    log.info("shard {} starts at LATEST: {} pages read to find its last record", shardId, page);
                }
                iterator = response.nextShardIterator();
            }
            return last == null ? ExtendedSequenceNumber.TRIM_HORIZON : new ExtendedSequenceNumber(last);
        }

        private String iteratorFrom(String shardId, String afterSequenceNumber) {
            GetShardIteratorRequest.Builder request = GetShardIteratorRequest.builder()
                    .streamArn(streamArn)
                    .shardId(shardId);
            if (afterSequenceNumber == null) {
                request.shardIteratorType(ShardIteratorType.TRIM_HORIZON);
            } else {
                request.shardIteratorType(ShardIteratorType.AFTER_SEQUENCE_NUMBER)
                        .sequenceNumber(afterSequenceNumber);
            }
            return scanner.getShardIterator(request.build()).shardIterator();
        }

        /** The stream's shards: id to parent id (null for none), and the ids of those still open. */
        StreamShards shards() {
            return describeShards(scanner, streamArn);
        }
    }

    record StreamShards(Map<String, String> parents, Set<String> open) {}

    static final class TrimmedGapWatch extends DelegatingStreamsClient {
        // Pages read from TRIM_HORIZON to find the oldest record: DynamoDB Streams may answer empty pages first.
        private static final int OLDEST_RECORD_PAGES = 5;
        private final boolean fail;
        private final Path gapsFile;
        private final Set<String> reported = ConcurrentHashMap.newKeySet();

        TrimmedGapWatch(DynamoDbStreamsClient delegate, boolean fail, Path gapsFile) {
            super(delegate);
            this.fail = fail;
            this.gapsFile = gapsFile;
        }

        @Override
        public GetShardIteratorResponse getShardIterator(GetShardIteratorRequest request) {
            try {
                return delegate.getShardIterator(request);
            } catch (TrimmedDataAccessException e) {
                ShardIteratorType type = request.shardIteratorType();
                // TRIM_HORIZON itself cannot skip anything; the adapter reports that failure as it is.
                if (type == ShardIteratorType.AT_SEQUENCE_NUMBER || type == ShardIteratorType.AFTER_SEQUENCE_NUMBER) {
                    gap(request.streamArn(), request.shardId(), type, request.sequenceNumber());
                }
                throw e;
            }
        }

        private void gap(String streamArn, String shardId, ShardIteratorType type, String position) {
            // A lease that comes back before anything past the gap was checkpointed asks for the same position
            // again: one gap, one report.
            if (!reported.add(shardId + " " + position)) {
                return;
            }
            String oldest = oldestAvailable(streamArn, shardId);
            String shown = oldest == null ? "unknown (no record could be read at the trim horizon)" : oldest;
            String from = type == ShardIteratorType.AT_SEQUENCE_NUMBER ? "at" : "after";
            MDC.put("shard_id", shardId);
            MDC.put("checkpoint_sequence_number", position);
            MDC.put("oldest_available_sequence_number", oldest == null ? "" : oldest);
            MDC.put("on_trimmed", fail ? "fail" : "continue");
            try {
                if (fail) {
                    log.error("records lost to the stream's 24-hour retention: shard {} was to be read {} sequence "
                            + "number {}, but the oldest record left is {}. Stopping without moving the checkpoint "
                            + "(source.on_trimmed: fail); a restart meets the same gap: to accept the loss and read "
                            + "on from the oldest record, set source.on_trimmed: continue", shardId, from, position,
                            shown);
                } else {
                    log.error("records lost to the stream's 24-hour retention: shard {} was to be read {} sequence "
                            + "number {}, but the oldest record left is {}; the records in between were never "
                            + "delivered. Reading goes on from the oldest record (source.on_trimmed: continue)",
                            shardId, from, position, shown);
                }
            } finally {
                for (String key : new String[] {"shard_id", "checkpoint_sequence_number",
                        "oldest_available_sequence_number", "on_trimmed"}) {
                    MDC.remove(key);
                }
            }
            record(shardId, position, oldest);
            if (fail) {
                TRIMMED_STOP.set(true);
                // Never returns: the shutdown hook halts with EXIT_TRIMMED, so the adapter's fallback to
                // TRIM_HORIZON is never reached.
                System.exit(EXIT_TRIMMED);
            }
        }

        private String oldestAvailable(String streamArn, String shardId) {
            try {
                String iterator = delegate.getShardIterator(GetShardIteratorRequest.builder()
                        .streamArn(streamArn)
                        .shardId(shardId)
                        .shardIteratorType(ShardIteratorType.TRIM_HORIZON)
                        .build()).shardIterator();
                for (int page = 0; iterator != null && page < OLDEST_RECORD_PAGES; page++) {
                    GetRecordsResponse records = delegate.getRecords(
                            GetRecordsRequest.builder().shardIterator(iterator).limit(1).build());
                    if (records.hasRecords() && !records.records().isEmpty()) {
                        return records.records().get(0).dynamodb().sequenceNumber();
                    }
                    iterator = records.nextShardIterator();
                }
            } catch (SdkException e) {
                log.warn("cannot read the oldest record of shard {}: {}", shardId, rootMessage(e));
            }
            return null;
        }

        private synchronized void record(String shardId, String position, String oldest) {
            if (gapsFile == null) {
                return;
            }
            StringBuilder line = new StringBuilder(256).append('{');
            JsonLogLayout.field(line, "shard_id", shardId).append(',');
            JsonLogLayout.field(line, "checkpoint_sequence_number", position).append(',');
            JsonLogLayout.string(line, "oldest_available_sequence_number").append(':');
            if (oldest == null) {
                line.append("null");
            } else {
                JsonLogLayout.string(line, oldest);
            }
            line.append(',');
            JsonLogLayout.field(line, "on_trimmed", fail ? "fail" : "continue").append(',');
            JsonLogLayout.field(line, "timestamp", Instant.now().toString());
            line.append("}\n");
            try {
                // One write of one short line: the supervisor, reading up to the last newline, never sees half.
                Files.write(gapsFile, line.toString().getBytes(StandardCharsets.UTF_8),
                        StandardOpenOption.CREATE, StandardOpenOption.APPEND);
            } catch (IOException e) {
                log.warn("cannot write the trimmed gaps file {}: {}", gapsFile, e.getMessage());
            }
        }
    }

    /**
     * Keeps a shard of another stream of the table away from the record processors. The lease table outlives a
     * stream switch and its keys are bare shard ids, so a lease of the table's new stream can be handed to a worker
     * still on the old stream (or the reverse). Asked for a shard its stream does not have, DynamoDB Streams answers
     * ResourceNotFoundException, which the adapter takes for the end of the shard: the child would then checkpoint
     * SHARD_END on a shard it never read, and the other stream's records would be skipped without a word. Here
     * such a shard, once found among the table's other streams (ListStreams, DescribeStream), fails its iterator
     * with a retryable error instead: the KCL tries again later, nothing is checkpointed, and the lease goes to a
     * worker on the right stream when this one moves on or stops. A shard no stream lists (expired after 24 hours)
     * still ends as before.
     */
    static final class ForeignShardGuard extends DelegatingStreamsClient {
        private static final String UNKNOWN = "";
        private final DynamoDbStreamsClient lookup;
        // Shard id -> the stream it belongs to ("" when the table's streams could not be listed).
        private final Map<String, String> foreign = new ConcurrentHashMap<>();

        ForeignShardGuard(DynamoDbStreamsClient delegate, DynamoDbStreamsClient lookup) {
            super(delegate);
            this.lookup = lookup;
        }

        @Override
        public GetShardIteratorResponse getShardIterator(GetShardIteratorRequest request) {
            String known = foreign.get(request.shardId());
            if (known != null) {
                throw refusal(request, known);
            }
            try {
                return delegate.getShardIterator(request);
            } catch (ResourceNotFoundException e) {
                String other = otherStreamOf(request.streamArn(), request.shardId());
                if (other == null) {
                    throw e;
                }
                foreign.put(request.shardId(), other);
                if (other.equals(UNKNOWN)) {
                    log.error("shard {} is not in stream {}, and the table's other streams cannot be listed (grant "
                            + "dynamodb:ListStreams): not reading it, so that its position is not ended unread",
                            request.shardId(), request.streamArn());
                } else {
                    log.warn("shard {} belongs to stream {}, not to stream {} read here: it is left to a worker on "
                            + "that stream", request.shardId(), other, request.streamArn());
                }
                throw refusal(request, other);
            }
        }

        private static SdkClientException refusal(GetShardIteratorRequest request, String other) {
            return SdkClientException.create("shard " + request.shardId() + " is not read on stream "
                    + request.streamArn() + (other.equals(UNKNOWN) ? "" : " (it belongs to " + other + ")"));
        }

        /** The other stream of the table listing the shard, UNKNOWN if they cannot be listed, or null. */
        private String otherStreamOf(String arn, String shardId) {
            String table = tableOf(arn);
            List<String> arns = new ArrayList<>();
            try {
                String start = null;
                do {
                    ListStreamsResponse page = lookup.listStreams(
                            ListStreamsRequest.builder().tableName(table).exclusiveStartStreamArn(start).build());
                    page.streams().forEach(stream -> arns.add(stream.streamArn()));
                    start = page.lastEvaluatedStreamArn();
                } while (start != null);
            } catch (SdkException e) {
                log.debug("cannot list the streams of table {}: {}", table, rootMessage(e));
                return UNKNOWN;
            }
            for (String other : arns) {
                if (other.equals(arn)) {
                    continue;
                }
                try {
                    if (describeShards(lookup, other).parents().containsKey(shardId)) {
                        return other;
                    }
                } catch (SdkException e) {
                    log.debug("cannot describe stream {}: {}", other, rootMessage(e));
                }
            }
            return null;
        }

        private static String tableOf(String arn) {
            // arn:aws:dynamodb:REGION:ACCOUNT:table/TABLE/stream/LABEL
            String resource = arn.split(":", 6)[5];
            return resource.split("/")[1];
        }
    }

    /** Every shard the stream lists, all pages: id to parent id (null for none), and the ids of those still open. */
    static StreamShards describeShards(DynamoDbStreamsClient client, String arn) {
        Map<String, String> parents = new HashMap<>();
        Set<String> open = new java.util.HashSet<>();
        String after = null;
        do {
            StreamDescription description = client.describeStream(
                    DescribeStreamRequest.builder().streamArn(arn).exclusiveStartShardId(after).build())
                    .streamDescription();
            for (Shard shard : description.shards()) {
                parents.put(shard.shardId(), shard.parentShardId());
                if (shard.sequenceNumberRange() == null || shard.sequenceNumberRange().endingSequenceNumber() == null) {
                    open.add(shard.shardId());
                }
            }
            after = description.lastEvaluatedShardId();
        } while (after != null);
        return new StreamShards(parents, open);
    }

    /**
     * Tells the supervisor, through a small file rewritten every second, the scheduler's state, that the JVM still
     * answers, and whether every position is fixed: "STARTED 1732870000123 positioned". The supervisor's /readyz
     * waits for STARTED and positioned; its /healthz fails when the time stops moving (a hung JVM).
     *
     * <p>Positioned means that every open shard of the stream has a lease (or an ancestor with one; leases of
     * another stream, left by a stream switch, do not count) and that no lease says LATEST any more: each names a
     * sequence number, TRIM_HORIZON or SHARD_END (a worker that took a LATEST lease writes the position it resolved
     * to, see LatestPins). Before that, a shard starting at LATEST would skip what is written now: a deploy that
     * waits for readiness and then writes must see its writes delivered. Once positioned, the worker stays so (the
     * lease table is not scanned again).
     */
    static final class EngineStateFile implements WorkerStateChangeListener {
        private final Path path;
        private final Path temporary;
        private volatile WorkerState state = WorkerState.CREATED;
        private volatile boolean positioned;

        EngineStateFile(Path path) {
            this.path = path;
            this.temporary = path.resolveSibling(path.getFileName() + ".tmp");
            ScheduledExecutorService beat = Executors.newSingleThreadScheduledExecutor(runnable -> {
                Thread thread = new Thread(runnable, "engine-state");
                thread.setDaemon(true);
                return thread;
            });
            beat.scheduleWithFixedDelay(this::beat, 0, 1, TimeUnit.SECONDS);
        }

        @Override
        public void onWorkerStateChange(WorkerState newState) {
            state = newState;
            write();
        }

        @Override
        public void onAllInitializationAttemptsFailed(Throwable e) {
            log.error("KCL scheduler initialisation failed for good: {}", rootMessage(e));
        }

        private void beat() {
            if (!positioned && state == WorkerState.STARTED) {
                positioned = everyPositionFixed();
                if (positioned) {
                    log.info("every shard's position is fixed in the lease table: ready");
                }
            }
            write();
        }

        private boolean everyPositionFixed() {
            LeaseCoordinator coordinator = leaseCoordinator;
            if (coordinator == null) {
                return false;
            }
            List<Lease> leases;
            try {
                leases = coordinator.leaseRefresher().listLeases();
            } catch (Exception e) {
                log.debug("lease table not readable yet: {}", rootMessage(e));
                return false;
            }
            if (leases.isEmpty()) {
                return false; // the first shard sync has not created the leases yet
            }
            Set<String> leased = new java.util.HashSet<>();
            for (Lease lease : leases) {
                // Still LATEST: the position is fixed only once a worker resolved it and wrote it into the lease.
                // An owner is not enough: it may be a stopped worker whose lease has not expired yet.
                if (ExtendedSequenceNumber.LATEST.equals(lease.checkpoint())) {
                    return false;
                }
                leased.add(lease.leaseKey());
            }
            return everyOpenShardLeased(leased);
        }

        /**
         * A worker joining a running application skips the start-up shard sync when the lease table is not empty:
         * if the worker that synced died half-way, an open shard may have no lease yet, and gets one at LATEST
         * only at the next periodic sync. Each open shard must have a lease, or an ancestor with one (its lease
         * is created, at TRIM_HORIZON, when the ancestor ends).
         */
        private boolean everyOpenShardLeased(Set<String> leased) {
            LatestPins pins = latestPins;
            if (pins == null) {
                return true;
            }
            StreamShards shards;
            try {
                shards = pins.shards();
            } catch (SdkException e) {
                log.debug("stream not describable yet: {}", rootMessage(e));
                return false;
            }
            for (String shard : shards.open()) {
                String ancestor = shard;
                // Bounded: a malformed lineage with a cycle must not hang the beat.
                for (int depth = 0; ancestor != null && !leased.contains(ancestor) && depth < 64; depth++) {
                    ancestor = shards.parents().get(ancestor);
                }
                if (ancestor == null || !leased.contains(ancestor)) {
                    log.debug("open shard {} has no lease yet", shard);
                    return false;
                }
            }
            return true;
        }

        private synchronized void write() {
            try {
                // Renamed into place: the supervisor never reads half a line.
                String line = state + " " + System.currentTimeMillis() + (positioned ? " positioned" : "") + "\n";
                Files.write(temporary, line.getBytes(StandardCharsets.US_ASCII));
                Files.move(temporary, path, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            } catch (IOException e) {
                log.warn("cannot write the engine state file {}: {}", path, e.getMessage());
            }
        }
    }

    /**
     * The JVM's log lines in the shape of the Python side's structlog lines, so one stream carries one format:
     * JSON by default, or a readable line when the supervisor writes to a terminal (-Dconsumer.log.console=true).
     */
    public static final class JsonLogLayout extends LayoutBase<ILoggingEvent> {
        private static final boolean CONSOLE = Boolean.getBoolean("consumer.log.console");

        public JsonLogLayout() {
            super();
        }

        @Override
        public String doLayout(ILoggingEvent event) {
            String level = level(event);
            String timestamp = Instant.ofEpochMilli(event.getTimeStamp()).toString();
            IThrowableProxy thrown = event.getThrowableProxy();
            String exception = thrown == null ? null : ThrowableProxyUtil.asString(thrown);
            if (CONSOLE) {
                StringBuilder line = new StringBuilder()
                        .append(timestamp).append(" [").append(String.format(Locale.ROOT, "%-9s", level)).append("] ")
                        .append(event.getFormattedMessage()).append("  logger=").append(event.getLoggerName())
                        .append(" source=kcl");
                event.getMDCPropertyMap().forEach((key, value) -> line.append(' ').append(key).append('=')
                        .append(value));
                line.append('\n');
                if (exception != null) {
                    line.append(exception).append('\n');
                }
                return line.toString();
            }
            StringBuilder json = new StringBuilder(256).append('{');
            field(json, "event", event.getFormattedMessage()).append(',');
            field(json, "level", level).append(',');
            field(json, "logger", event.getLoggerName()).append(',');
            field(json, "thread", event.getThreadName()).append(',');
            field(json, "source", "kcl").append(',');
            for (Map.Entry<String, String> entry : event.getMDCPropertyMap().entrySet()) {
                field(json, entry.getKey(), entry.getValue()).append(',');
            }
            if (exception != null) {
                field(json, "exception", exception).append(',');
            }
            field(json, "timestamp", timestamp);
            return json.append("}\n").toString();
        }

        private static String level(ILoggingEvent event) {
            // structlog's names, so a filter on level matches both sides.
            switch (event.getLevel().toString()) {
                case "WARN":
                    return "warning";
                default:
                    return event.getLevel().toString().toLowerCase(Locale.ROOT);
            }
        }

        static StringBuilder field(StringBuilder json, String name, String value) {
            return string(string(json, name).append(':'), value);
        }

        static StringBuilder string(StringBuilder json, String value) {
            json.append('"');
            if (value == null) {
                value = "";
            }
            for (int i = 0; i < value.length(); i++) {
                char c = value.charAt(i);
                switch (c) {
                    case '"': json.append("\\\""); break;
                    case '\\': json.append("\\\\"); break;
                    case '\n': json.append("\\n"); break;
                    case '\r': json.append("\\r"); break;
                    case '\t': json.append("\\t"); break;
                    default:
                        if (c < 0x20) {
                            json.append(String.format(Locale.ROOT, "\\u%04x", (int) c));
                        } else {
                            json.append(c);
                        }
                }
            }
            return json.append('"');
        }
    }
}
