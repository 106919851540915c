#include "pkg05/l05_08.h"
#include "pkg05/l05_07.h"
#include <algorithm>
#include <numeric>

namespace l05_08 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 4) ^ (b + 53); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 53, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 6 == 0; }));
  total += l05_07::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l05_08:" + std::to_string(score({seed, seed * 4, 53}));
}
}  // namespace l05_08
