#include "pkg03/l03_06.h"
#include "pkg03/l03_05.h"
#include <algorithm>
#include <numeric>

namespace l03_06 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 10) ^ (b + 33); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 33, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 7 == 0; }));
  total += l03_05::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l03_06:" + std::to_string(score({seed, seed * 10, 33}));
}
}  // namespace l03_06
