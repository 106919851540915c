#include "pkg03/l03_05.h"
#include "pkg03/l03_04.h"
#include <algorithm>
#include <numeric>

namespace l03_05 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 9) ^ (b + 32); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 32, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 6 == 0; }));
  total += l03_04::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l03_05:" + std::to_string(score({seed, seed * 9, 32}));
}
}  // namespace l03_05
